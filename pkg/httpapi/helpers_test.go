package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
	"github.com/sagaproject/saga/pkg/store/embedded"
	"github.com/sagaproject/saga/pkg/ui"
	"github.com/sagaproject/saga/pkg/view"
)

var epoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// harness is the API over a real embedded store in a temp dir, with a
// manual clock.
type harness struct {
	api     *httpapi.API
	store   *embedded.Store
	metered registry.Store // store with the server's metrics
	view    *view.View
	clock   *registry.ManualClock
}

func newHarness(t testing.TB, configure ...func(*server.Options)) *harness {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if tt, ok := t.(*testing.T); ok {
		logger = slog.New(slog.NewTextHandler(tt.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	st, err := embedded.Open(t.TempDir(), logger)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	clock := registry.NewManualClock(epoch)
	console, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	opts := server.Options{
		Store: st, Storage: "embedded", Clock: clock, Logger: logger,
		DefaultTTL: 60 * time.Second, HeartbeatInterval: 30 * time.Second,
		Version: "1.2.3", Console: console, // as the daemon has it by default
	}
	for _, c := range configure {
		c(&opts)
	}
	// The server as the daemon assembles it, without its background work:
	// tests drive the clock, and the reaper where they need it.
	srv, err := server.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("assemble server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &harness{api: srv.API(), store: st, metered: srv.Store(), view: srv.View(), clock: clock}
}

// do sends one request through the real router.
func (h *harness) do(t testing.TB, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	return rec
}

// register registers an instance and fails the test unless it is created.
func (h *harness) register(t testing.TB, service, body string) registry.Instance {
	t.Helper()
	rec := h.do(t, http.MethodPost, "/api/v1/services/"+service+"/instances", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register %s %s: %d %s", service, body, rec.Code, rec.Body)
	}
	var in registry.Instance
	decode(t, rec, &in)
	return in
}

func (h *harness) snapshot(t testing.TB) registry.Snapshot {
	t.Helper()
	snap, err := h.store.Snapshot(context.Background())
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return snap
}

func decode(t testing.TB, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body, err)
	}
}

// apiError is the JSON error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// wantError checks an error answer's status, code and field.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int, code, field string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var e apiError
	decode(t, rec, &e)
	if e.Error.Code != code || e.Error.Field != field || e.Error.Message == "" {
		t.Fatalf("error %+v, want code %q field %q", e.Error, code, field)
	}
}

type lookupAnswer struct {
	Service   string              `json:"service"`
	Index     uint64              `json:"index"`
	Instances []registry.Instance `json:"instances"`
}

func ids(list []registry.Instance) []string {
	out := []string{}
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}
