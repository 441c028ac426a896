package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/server"
)

func TestConsoleRoutes(t *testing.T) {
	h := newHarness(t, func(o *server.Options) {
		o.Auth = httpapi.AuthSettings{Enabled: true, ProtectedMode: true}
	})
	rec := h.do(t, http.MethodGet, "/ui", "")
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", rec.Code, rec.Header().Get("Location"))
	}
	// The assets are open, from any address and without a token: they hold
	// no registry data.
	req := httptest.NewRequest(http.MethodGet, "/ui/", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	rec = httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<title>Saga console</title>") {
		t.Errorf("GET /ui/ from another machine: %d %.80s", rec.Code, rec.Body)
	}
	if rec := h.do(t, http.MethodGet, "/ui/app.js", ""); rec.Code != http.StatusOK {
		t.Errorf("GET /ui/app.js: %d", rec.Code)
	}
}

func TestConsoleOff(t *testing.T) {
	h := newHarness(t, func(o *server.Options) { o.Console = nil })
	for _, path := range []string{"/ui", "/ui/", "/ui/app.js"} {
		if rec := h.do(t, http.MethodGet, path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s without a console: %d, want 404", path, rec.Code)
		}
	}
}
