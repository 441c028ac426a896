package client

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// These tests hold the token methods to the shape of the API's token
// routes (SPEC §6): the request each one sends and how it reads the answer.

// recorded is one request as a fake server saw it.
type recorded struct {
	method, path string
	contentType  string
	body         string
}

// tokenServer answers every request with status and body, and records it.
func tokenServer(t *testing.T, status int, body string) (*Client, func() []recorded) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []recorded
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, recorded{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), string(data)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), got...)
	}
}

// wantOneRequest checks that exactly one request was sent, as given.
func wantOneRequest(t *testing.T, got []recorded, method, path string) recorded {
	t.Helper()
	if len(got) != 1 || got[0].method != method || got[0].path != path {
		t.Fatalf("requests = %+v, want one %s %s", got, method, path)
	}
	return got[0]
}

var (
	created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	expires = created.Add(720 * time.Hour)
)

func TestBootstrapPostsNoBodyAndReadsTheSecret(t *testing.T) {
	c, requests := tokenServer(t, http.StatusCreated,
		`{"accessor":"a-1","secret":"saga_x","role":"admin","services":[],"description":"bootstrap","created_at":"2026-01-02T03:04:05Z"}`)
	tok, err := c.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req := wantOneRequest(t, requests(), http.MethodPost, "/api/v1/tokens/bootstrap")
	if req.body != "" || req.contentType != "" {
		t.Errorf("bootstrap sent a body: %q (%s)", req.body, req.contentType)
	}
	want := NewToken{
		Token:  Token{Accessor: "a-1", Role: RoleAdmin, Services: []string{}, Description: "bootstrap", CreatedAt: created},
		Secret: "saga_x",
	}
	if !reflect.DeepEqual(tok, want) {
		t.Errorf("Bootstrap = %+v, want %+v", tok, want)
	}
}

func TestBootstrapRefusedIsPermissionDenied(t *testing.T) {
	c, _ := tokenServer(t, http.StatusForbidden,
		`{"error":{"code":"permission_denied","message":"a token exists already"}}`)
	_, err := c.Bootstrap(t.Context())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != CodePermissionDenied || apiErr.Status != http.StatusForbidden {
		t.Errorf("Bootstrap = %v, want a 403 permission_denied", err)
	}
}

func TestCreateTokenSendsTheSpec(t *testing.T) {
	answer := `{"accessor":"a-2","secret":"saga_y","role":"write","services":["web","payments-*"],` +
		`"description":"deploys","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-02-01T03:04:05Z"}`
	tests := []struct {
		name string
		spec TokenSpec
		want map[string]any // the JSON body sent
	}{
		{
			"everything",
			TokenSpec{Role: RoleWrite, Services: []string{"web", "payments-*"}, Description: "deploys", ExpiresIn: 720 * time.Hour},
			map[string]any{"role": "write", "services": []any{"web", "payments-*"}, "description": "deploys", "expires_in": "720h0m0s"},
		},
		{
			// Left out, they mean every service and never.
			"role only",
			TokenSpec{Role: RoleRead},
			map[string]any{"role": "read"},
		},
		{
			"sub-second expiry",
			TokenSpec{Role: RoleRead, ExpiresIn: 1500 * time.Millisecond},
			map[string]any{"role": "read", "expires_in": "1.5s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, requests := tokenServer(t, http.StatusCreated, answer)
			tok, err := c.CreateToken(t.Context(), tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			req := wantOneRequest(t, requests(), http.MethodPost, "/api/v1/tokens")
			if req.contentType != "application/json" {
				t.Errorf("Content-Type = %q", req.contentType)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(req.body), &body); err != nil || !reflect.DeepEqual(body, tt.want) {
				t.Errorf("body = %s (%v), want %v", req.body, err, tt.want)
			}
			if tok.Secret != "saga_y" || tok.Accessor != "a-2" || !tok.ExpiresAt.Equal(expires) ||
				!reflect.DeepEqual(tok.Services, []string{"web", "payments-*"}) {
				t.Errorf("CreateToken = %+v", tok)
			}
		})
	}
}

func TestCreateTokenBadInputNamesTheField(t *testing.T) {
	c, _ := tokenServer(t, http.StatusBadRequest,
		`{"error":{"code":"invalid_argument","message":"\"x y\" is not a service name glob","field":"services[0]"}}`)
	_, err := c.CreateToken(t.Context(), TokenSpec{Role: RoleRead, Services: []string{"x y"}})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != CodeInvalidArgument || apiErr.Field != "services[0]" {
		t.Errorf("CreateToken = %v, want invalid_argument naming services[0]", err)
	}
}

func TestTokensListsWithoutSecrets(t *testing.T) {
	c, requests := tokenServer(t, http.StatusOK, `{"tokens":[`+
		`{"accessor":"a-1","role":"admin","services":[],"description":"bootstrap","created_at":"2026-01-02T03:04:05Z","expired":false},`+
		`{"accessor":"a-2","role":"read","description":"","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-02-01T03:04:05Z","expired":true}]}`)
	list, err := c.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantOneRequest(t, requests(), http.MethodGet, "/api/v1/tokens")
	want := []Token{
		{Accessor: "a-1", Role: RoleAdmin, Services: []string{}, Description: "bootstrap", CreatedAt: created},
		// A server that leaves services out still gives an empty list.
		{Accessor: "a-2", Role: RoleRead, Services: []string{}, CreatedAt: created, ExpiresAt: expires, Expired: true},
	}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("Tokens = %+v\nwant %+v", list, want)
	}
}

func TestTokensOfAnEmptyListIsEmptyNotNil(t *testing.T) {
	c, _ := tokenServer(t, http.StatusOK, `{"tokens":null}`)
	list, err := c.Tokens(t.Context())
	if err != nil || list == nil || len(list) != 0 {
		t.Errorf("Tokens = %#v, %v; want an empty list", list, err)
	}
}

func TestTokenSelf(t *testing.T) {
	c, requests := tokenServer(t, http.StatusOK,
		`{"accessor":"a-3","role":"write","services":["web*"],"description":"ci","created_at":"2026-01-02T03:04:05Z","expired":false}`)
	tok, err := c.TokenSelf(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantOneRequest(t, requests(), http.MethodGet, "/api/v1/tokens/self")
	want := Token{Accessor: "a-3", Role: RoleWrite, Services: []string{"web*"}, Description: "ci", CreatedAt: created}
	if !reflect.DeepEqual(tok, want) {
		t.Errorf("TokenSelf = %+v, want %+v", tok, want)
	}

	c, _ = tokenServer(t, http.StatusUnauthorized, `{"error":{"code":"unauthenticated","message":"a token is required"}}`)
	var apiErr *Error
	if _, err := c.TokenSelf(t.Context()); !errors.As(err, &apiErr) || apiErr.Code != CodeUnauthenticated {
		t.Errorf("TokenSelf without a token = %v, want unauthenticated", err)
	}
}

func TestRevokeToken(t *testing.T) {
	c, requests := tokenServer(t, http.StatusNoContent, "")
	if err := c.RevokeToken(t.Context(), "a/1 x"); err != nil {
		t.Fatal(err)
	}
	// The accessor is one path segment, whatever it holds.
	wantOneRequest(t, requests(), http.MethodDelete, "/api/v1/tokens/a%2F1%20x")

	c, _ = tokenServer(t, http.StatusNotFound, `{"error":{"code":"not_found","message":"token a-9 not found"}}`)
	if err := c.RevokeToken(t.Context(), "a-9"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("RevokeToken of an unknown accessor = %v, want one matching registry.ErrNotFound", err)
	}

	c, requests = tokenServer(t, http.StatusNoContent, "")
	if err := c.RevokeToken(t.Context(), ""); err == nil {
		t.Error("RevokeToken of an empty accessor succeeded")
	}
	if got := requests(); len(got) != 0 {
		t.Errorf("an empty accessor sent %+v", got)
	}
}
