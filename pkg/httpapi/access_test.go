package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/server"
)

// routeAccess is the access every route of the API needs (SPEC §6). A
// route added to routes.go without a line here fails
// TestEveryRouteHasAPolicy: decide who may call it before users can.
var routeAccess = map[string]string{
	"GET /livez":   "open",
	"GET /readyz":  "open",
	"GET /metrics": "read",
	"GET /ui":      "open", // the console's assets: no registry data
	"GET /ui/*":    "open",

	"GET /api/v1/health":                                      "open",
	"GET /api/v1/services/{service}/health":                   "open",
	"GET /api/v1/events":                                      "read",
	"GET /api/v1/services":                                    "read",
	"GET /api/v1/services/{service}":                          "read",
	"GET /api/v1/services/{service}/instances/{id}":           "read",
	"POST /api/v1/services/{service}/instances":               "write",
	"DELETE /api/v1/services/{service}/instances/{id}":        "write",
	"PUT /api/v1/services/{service}/instances/{id}/heartbeat": "write",
	"GET /api/v1/sd/prometheus":                               "read",
	"POST /api/v1/tokens/bootstrap":                           "local",
	"POST /api/v1/tokens":                                     "admin",
	"GET /api/v1/tokens":                                      "admin",
	"GET /api/v1/tokens/self":                                 "read",
	"DELETE /api/v1/tokens/{accessor}":                        "admin",
}

// authHarness is the API with auth on and one token of each role.
type authHarness struct {
	*harness
	secrets map[string]string // role (or "web-writer", "expired", "revoked") → secret
	tokens  map[string]auth.Token
}

func newAuthHarness(t testing.TB) *authHarness {
	t.Helper()
	h := newHarness(t, func(o *server.Options) {
		o.Auth = httpapi.AuthSettings{Enabled: true, ProtectedMode: true}
	})
	ah := &authHarness{harness: h, secrets: map[string]string{}, tokens: map[string]auth.Token{}}
	specs := map[string]auth.Spec{
		"read":       {Role: auth.RoleRead},
		"write":      {Role: auth.RoleWrite},
		"admin":      {Role: auth.RoleAdmin},
		"web-writer": {Role: auth.RoleWrite, Services: []string{"web*"}},
		"web-admin":  {Role: auth.RoleAdmin, Services: []string{"web*"}},
		"expired":    {Role: auth.RoleAdmin, TTL: time.Minute},
		"revoked":    {Role: auth.RoleAdmin},
	}
	for name, spec := range specs {
		tok, secret, err := h.api.Tokens().Create(context.Background(), spec)
		if err != nil {
			t.Fatalf("create %s token: %v", name, err)
		}
		ah.secrets[name], ah.tokens[name] = secret, tok
	}
	h.clock.Advance(2 * time.Minute) // "expired" is past its expiry
	if _, err := h.api.Tokens().Revoke(context.Background(), ah.tokens["revoked"].Accessor); err != nil {
		t.Fatal(err)
	}
	return ah
}

// call sends a request from addr ("127.0.0.1" or another address) with the
// token of who ("" for none).
func (h *authHarness) call(t testing.TB, who, addr, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = net.JoinHostPort(addr, "40000")
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+h.secrets[who])
	}
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	return rec
}

// denied reports whether the answer refuses the caller (401, or a 403 that
// is about the caller rather than the request).
func denied(rec *httptest.ResponseRecorder) bool {
	return rec.Code == http.StatusUnauthorized ||
		rec.Code == http.StatusForbidden && !strings.Contains(rec.Body.String(), "bootstrap is done")
}

// routes lists the router's routes as "METHOD /pattern".
func routes(t *testing.T, api *httpapi.API) []string {
	t.Helper()
	var list []string
	err := chi.Walk(api.Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method != http.MethodHead { // middleware.GetHead serves HEAD as GET
			list = append(list, method+" "+strings.TrimSuffix(route, "/"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(list)
	return list
}

func TestEveryRouteHasAPolicy(t *testing.T) {
	h := newHarness(t)
	list := routes(t, h.api)
	for _, route := range list {
		if _, ok := routeAccess[route]; !ok {
			t.Errorf("route %s has no line in routeAccess: decide who may call it", route)
		}
	}
	for route := range routeAccess {
		if !slices.Contains(list, route) {
			t.Errorf("routeAccess names %s, which the router does not have", route)
		}
	}
}

// sample fills a route pattern with values and gives it a body that passes
// validation, so that only access decides the answer.
func sample(route string) (method, target, body string) {
	method, pattern, _ := strings.Cut(route, " ")
	target = strings.NewReplacer("{service}", "web", "{id}", "web-1", "{accessor}", "00000000-0000-4000-8000-000000000000").Replace(pattern)
	switch route {
	case "POST /api/v1/services/{service}/instances":
		body = `{"id":"web-1","address":"10.0.0.1","port":80}`
	case "POST /api/v1/tokens":
		body = `{"role":"read"}`
	}
	return method, target, body
}

// TestRoleRouteMatrix sends every route of the router as every kind of
// caller and checks that exactly the roles its policy names get through.
func TestRoleRouteMatrix(t *testing.T) {
	h := newAuthHarness(t)
	callers := []string{"", "read", "write", "admin", "expired", "revoked"}
	allowed := map[string][]string{
		"open":  callers,
		"read":  {"read", "write", "admin"},
		"write": {"write", "admin"},
		"admin": {"admin"},
		"local": callers, // from loopback; TestProtectedMode covers the rest
	}
	for _, route := range routes(t, h.api) {
		policy := routeAccess[route]
		for _, who := range callers {
			method, target, body := sample(route)
			if strings.HasPrefix(target, "/api/v1/events") {
				target += "?service=none" // ends at once: the test's context is not cancelled
			}
			rec := h.callQuick(t, who, method, target, body)
			want := slices.Contains(allowed[policy], who)
			if got := !denied(rec); got != want {
				t.Errorf("%s as %q: %d %s; want allowed=%v (policy %s)", route, who, rec.Code, strings.TrimSpace(rec.Body.String()), want, policy)
			}
			if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s as %q: 401 without WWW-Authenticate", route, who)
			}
		}
	}
}

// callQuick is call from loopback, with event streams cut short.
func (h *authHarness) callQuick(t testing.TB, who, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+h.secrets[who])
	}
	ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req.WithContext(ctx))
	return rec
}

func TestTokenRefusals(t *testing.T) {
	h := newAuthHarness(t)
	tests := []struct {
		name, header string
		status       int
		code, reason string
	}{
		{"no header", "", 401, "unauthenticated", "needs a token"},
		{"not bearer", "Basic dXNlcjpwYXNz", 401, "unauthenticated", "not Bearer"},
		{"no prefix", "Bearer abc", 401, "unauthenticated", "not Bearer"},
		{"short secret", "Bearer saga_abc", 401, "unauthenticated", "not Bearer"},
		{"unknown", "Bearer saga_" + strings.Repeat("A", 43), 401, "unauthenticated", "not known"},
		{"expired", "Bearer " + h.secrets["expired"], 401, "unauthenticated", "expired"},
		{"revoked", "Bearer " + h.secrets["revoked"], 401, "unauthenticated", "not known"},
		{"lower-case scheme", "bearer " + h.secrets["read"], 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.api.ServeHTTP(rec, req)
			if tt.status == 200 {
				if rec.Code != 200 {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
				return
			}
			wantError(t, rec, tt.status, tt.code, "")
			if !strings.Contains(rec.Body.String(), tt.reason) {
				t.Errorf("message %s does not say %q", rec.Body, tt.reason)
			}
		})
	}
}

func TestScopedToken(t *testing.T) {
	h := newAuthHarness(t)
	for _, svc := range []string{"web", "webhooks", "db"} {
		rec := h.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/services/"+svc+"/instances", `{"id":"a","address":"10.0.0.1","port":80}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("register %s: %d %s", svc, rec.Code, rec.Body)
		}
	}
	// Writes and reads outside the scope are refused, inside allowed.
	rec := h.call(t, "web-writer", "10.1.1.1", http.MethodPost, "/api/v1/services/db/instances", `{"id":"b","address":"10.0.0.1","port":80}`)
	wantError(t, rec, 403, "permission_denied", "")
	rec = h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/services/db", "")
	wantError(t, rec, 403, "permission_denied", "")
	rec = h.call(t, "web-writer", "10.1.1.1", http.MethodPost, "/api/v1/services/web/instances", `{"id":"b","address":"10.0.0.1","port":80}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register web in scope: %d %s", rec.Code, rec.Body)
	}
	// The catalogue shows only the services in scope.
	rec = h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/services", "")
	var cat struct {
		Services []struct{ Name string } `json:"services"`
	}
	decode(t, rec, &cat)
	var names []string
	for _, s := range cat.Services {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"web", "webhooks"}) {
		t.Fatalf("scoped catalogue %v, want [web webhooks]", names)
	}
	// The event stream refuses a service outside the scope.
	rec = h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/events?service=db", "")
	wantError(t, rec, 403, "permission_denied", "")
	// A scoped admin may not manage tokens.
	rec = h.call(t, "web-admin", "10.1.1.1", http.MethodGet, "/api/v1/tokens", "")
	wantError(t, rec, 403, "permission_denied", "")
}

func TestScopedEventStream(t *testing.T) {
	h := newAuthHarness(t)
	srv := httptest.NewServer(h.api)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+h.secrets["web-writer"])
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events as web-writer: %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	for _, svc := range []string{"db", "web"} {
		rec := h.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/services/"+svc+"/instances", `{"id":"a","address":"10.0.0.1","port":80}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("register %s: %d", svc, rec.Code)
		}
	}
	if ev := nextEvent(t, r); ev.data.Service != "web" {
		t.Fatalf("the first event a web* token sees is for %q, want web", ev.data.Service)
	}
}

func TestProtectedMode(t *testing.T) {
	h := newHarness(t, func(o *server.Options) {
		o.Auth = httpapi.AuthSettings{Enabled: false, ProtectedMode: true}
	})
	ah := &authHarness{harness: h}
	for _, route := range routes(t, h.api) {
		method, target, body := sample(route)
		if strings.HasPrefix(target, "/api/v1/events") {
			target += "?service=none"
		}
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.RemoteAddr = "192.0.2.7:40000"
		ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
		rec := httptest.NewRecorder()
		h.api.ServeHTTP(rec, req.WithContext(ctx))
		cancel()
		policy := routeAccess[route]
		if policy == "open" {
			if denied(rec) {
				t.Errorf("%s from another machine in protected mode: %d, want it open for probes", route, rec.Code)
			}
			continue
		}
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s from another machine in protected mode: %d, want 403", route, rec.Code)
			continue
		}
		if policy != "local" && (!strings.Contains(rec.Body.String(), "auth.enabled") || !strings.Contains(rec.Body.String(), "server.protected_mode")) {
			t.Errorf("%s: the 403 does not name both ways out: %s", route, rec.Body)
		}
	}
	// From this machine, everything answers without a token.
	rec := ah.call(t, "", "127.0.0.1", http.MethodGet, "/api/v1/services", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("loopback in protected mode: %d %s", rec.Code, rec.Body)
	}
	rec = ah.call(t, "", "::1", http.MethodGet, "/api/v1/services", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("IPv6 loopback in protected mode: %d %s", rec.Code, rec.Body)
	}
	// Turned off, another machine is answered too.
	h.api.SetAuth(httpapi.AuthSettings{})
	rec = ah.call(t, "", "192.0.2.7", http.MethodGet, "/api/v1/services", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("protected mode off: %d %s", rec.Code, rec.Body)
	}
}

func TestTokenLifecycle(t *testing.T) {
	h := newHarness(t, func(o *server.Options) { o.Auth = httpapi.AuthSettings{Enabled: true} })
	ah := &authHarness{harness: h, secrets: map[string]string{}}
	// Bootstrap from loopback, once.
	rec := ah.call(t, "", "127.0.0.1", http.MethodPost, "/api/v1/tokens/bootstrap", "")
	if rec.Code != http.StatusCreated {
		t.Fatalf("bootstrap: %d %s", rec.Code, rec.Body)
	}
	var boot struct{ Accessor, Secret, Role string }
	decode(t, rec, &boot)
	if boot.Role != "admin" || auth.CheckSecret(boot.Secret) != nil {
		t.Fatalf("bootstrap answer %+v", boot)
	}
	ah.secrets["admin"] = boot.Secret
	rec = ah.call(t, "", "127.0.0.1", http.MethodPost, "/api/v1/tokens/bootstrap", "")
	wantError(t, rec, 403, "permission_denied", "")

	// Create, with bad input refused naming the field.
	for body, field := range map[string]string{
		`{"role":"root"}`:                                                  "role",
		`{"role":"read","services":["a/b"]}`:                               "services",
		`{"role":"read","expires_in":"soon"}`:                              "expires_in",
		`{"role":"read","expires_in":-5}`:                                  "expires_in",
		`{"role":"read","description":"` + strings.Repeat("x", 300) + `"}`: "description",
		`{"role":"read","secret":"saga_x"}`:                                "secret",
	} {
		rec = ah.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/tokens", body)
		wantError(t, rec, 400, "invalid_argument", field)
	}
	rec = ah.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/tokens", `{"role":"write","services":["web*"],"description":"ci","expires_in":"720h"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		Accessor, Secret string
		Services         []string
		ExpiresAt        time.Time `json:"expires_at"`
	}
	decode(t, rec, &created)
	if want := epoch.Add(720 * time.Hour); !created.ExpiresAt.Equal(want) || !slices.Equal(created.Services, []string{"web*"}) {
		t.Fatalf("created %+v, want expiry %v and scope web*", created, want)
	}
	ah.secrets["ci"] = created.Secret

	// The new token works, shows itself, and is listed without its secret.
	rec = ah.call(t, "ci", "10.1.1.1", http.MethodGet, "/api/v1/tokens/self", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), created.Accessor) {
		t.Fatalf("self: %d %s", rec.Code, rec.Body)
	}
	rec = ah.call(t, "admin", "127.0.0.1", http.MethodGet, "/api/v1/tokens", "")
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "saga_") || strings.Contains(rec.Body.String(), auth.HashSecret(created.Secret)) {
		t.Fatalf("list shows a secret or hash, or failed: %d %s", rec.Code, rec.Body)
	}
	var list struct{ Tokens []json.RawMessage }
	decode(t, rec, &list)
	if len(list.Tokens) != 2 {
		t.Fatalf("list has %d tokens, want 2: %s", len(list.Tokens), rec.Body)
	}

	// Revoked, it is refused at once.
	rec = ah.call(t, "admin", "127.0.0.1", http.MethodDelete, "/api/v1/tokens/"+created.Accessor, "")
	if rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	rec = ah.call(t, "ci", "10.1.1.1", http.MethodGet, "/api/v1/tokens/self", "")
	wantError(t, rec, 401, "unauthenticated", "")
	rec = ah.call(t, "admin", "127.0.0.1", http.MethodDelete, "/api/v1/tokens/"+created.Accessor, "")
	wantError(t, rec, 404, "not_found", "")
}

// TestRevocationEndsWhatTheTokenHolds: an event stream and a blocking
// query opened with a token end when it is revoked; the blocking query,
// which has answered nothing yet, answers 401.
func TestRevocationEndsWhatTheTokenHolds(t *testing.T) {
	h := newAuthHarness(t)
	srv := httptest.NewServer(h.api)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	open := func(path string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+h.secrets["read"])
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	stream := open("/api/v1/events")
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", stream.StatusCode)
	}
	blocked := make(chan *http.Response, 1)
	go func() { blocked <- open("/api/v1/services/web?index=0&wait=30s") }()
	asynctest.Eventually(t, 5*time.Second, "the blocking query to be open", func() error {
		if rec := h.call(t, "admin", "127.0.0.1", http.MethodGet, "/metrics", ""); !strings.Contains(rec.Body.String(), "saga_http_blocking_queries_open 1") {
			return errors.New("no blocking query open yet")
		}
		return nil
	})

	if _, err := h.api.Tokens().Revoke(context.Background(), h.tokens["read"].Accessor); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-blocked:
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("blocking query after revocation: %d, want 401", resp.StatusCode)
		}
	case <-time.After(5 * time.Second):
		t.Error("the blocking query outlived its token's revocation")
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, stream.Body); ended <- err }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the event stream outlived its token's revocation")
	}
}
