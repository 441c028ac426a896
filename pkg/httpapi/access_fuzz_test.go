package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzAuthorization sends any Authorization header to a read and a write
// route: the answer is 401 or a success, never a 5xx or a panic.
func FuzzAuthorization(f *testing.F) {
	for _, seed := range []string{
		"", "Bearer", "Bearer ", "Bearer saga_", "bearer saga_" + strings.Repeat("A", 43),
		"Bearer saga_" + strings.Repeat("-", 43), "Basic Zm9vOmJhcg==", "Bearer\tsaga_x",
		"Bearer saga_" + strings.Repeat("A", 43) + " extra", "\x00\xff", "Bearer " + strings.Repeat("x", 5000),
	} {
		f.Add(seed)
	}
	h := newAuthHarness(f)
	f.Add("Bearer " + h.secrets["admin"])
	f.Fuzz(func(t *testing.T, header string) {
		for _, target := range []string{"/api/v1/services", "/api/v1/tokens/self"} {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Header["Authorization"] = []string{header}
			rec := httptest.NewRecorder()
			h.api.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK && rec.Code != http.StatusUnauthorized {
				t.Fatalf("Authorization %q on %s: %d %s", header, target, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzTokenEndpoints sends any body to token creation and any accessor to
// revocation: never a 5xx or a panic, and a refused request creates nothing.
func FuzzTokenEndpoints(f *testing.F) {
	for _, seed := range []struct{ body, accessor string }{
		{`{"role":"read"}`, "x"},
		{`{"role":"write","services":["web*","db"],"expires_in":"1h","description":"d"}`, "00000000-0000-4000-8000-000000000000"},
		{`{"role":"admin","expires_in":3600}`, ""},
		{`{"role":"read","expires_in":1e400}`, "../x"},
		{`{"role":"read","services":[""]}`, "%00"},
		{`{"role":"read","services":null,"expires_in":null}`, "a b"},
		{`[]`, strings.Repeat("a", 300)},
		{"\xff", "é"},
	} {
		f.Add(seed.body, seed.accessor)
	}
	h := newAuthHarness(f)
	f.Fuzz(func(t *testing.T, body, accessor string) {
		before := h.api.Tokens().Count()
		rec := h.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/tokens", body)
		switch {
		case rec.Code == http.StatusCreated:
			var created struct{ Accessor string }
			decode(t, rec, &created)
			if del := h.call(t, "admin", "127.0.0.1", http.MethodDelete, "/api/v1/tokens/"+created.Accessor, ""); del.Code != http.StatusNoContent {
				t.Fatalf("revoke the token just made: %d %s", del.Code, del.Body)
			}
		case rec.Code >= 500:
			t.Fatalf("create with %q: %d %s", body, rec.Code, rec.Body)
		case h.api.Tokens().Count() != before:
			t.Fatalf("refused create (%d) changed the tokens", rec.Code)
		}
		rec = h.call(t, "admin", "127.0.0.1", http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(accessor), "")
		if rec.Code >= 500 || rec.Code == http.StatusNoContent {
			t.Fatalf("revoke %q: %d %s", accessor, rec.Code, rec.Body)
		}
	})
}
