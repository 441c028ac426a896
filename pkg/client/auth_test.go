package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

const secret = "saga_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

// authServer is an HTTPS stand-in for Saga that wants secret as a bearer
// token and records which requests carried it.
type authServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "GET /api/v1/events Bearer …"
}

func newAuthServer(t *testing.T) *authServer {
	s := &authServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/services/web/instances", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]any{"service": "web", "id": "web-1", "address": "10.0.0.5", "port": 80,
			"status": "passing", "ttl_seconds": 10, "heartbeat_interval_seconds": 0.02})
	})
	mux.HandleFunc("PUT /api/v1/services/web/instances/web-1/heartbeat", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ttl_seconds": 10, "expires_at": time.Now().Add(10 * time.Second)})
	})
	mux.HandleFunc("DELETE /api/v1/services/web/instances/web-1", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/v1/services/web", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"service": "web", "index": 7, "instances": []any{}})
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: registered\ndata: {\"type\":\"registered\",\"service\":\"web\",\"index\":8}\n\n")
	})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		s.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.Header().Set("WWW-Authenticate", `Bearer realm="saga"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]string{
				"code": "unauthenticated", "message": "this request needs a token: send Authorization: Bearer saga_…"}})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// trust is a TLS configuration that trusts the test server's certificate.
func (s *authServer) trust() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestTokenGoesWithEveryRequestOverTLS(t *testing.T) {
	srv := newAuthServer(t)
	c, err := client.New(srv.URL, client.WithToken(secret), client.WithTLS(srv.trust()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	if _, err := c.Lookup(ctx, "web", client.LookupOptions{QueryOptions: client.QueryOptions{Index: 3, Wait: time.Second}}); err != nil {
		t.Fatalf("blocking query: %v", err)
	}
	stream, err := c.Events(ctx, "web")
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if ev, err := stream.Next(); err != nil || ev.Index != 8 {
		t.Errorf("first event %+v, %v", ev, err)
	}
	stream.Close()

	kaCtx, cancel := context.WithCancel(ctx)
	heartbeats := 0
	err = c.KeepAlive(kaCtx, "web", registry.Registration{ID: "web-1", Address: "10.0.0.5", Port: 80}, client.KeepAliveOptions{
		OnError: func(err error) { t.Errorf("KeepAlive: %v", err) },
		OnRegister: func(client.Registered) {
			go func() {
				// Let a few heartbeats go out, then stop.
				for len(srv.requests()) < 6 {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
		},
	})
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}

	for _, r := range srv.requests() {
		if !strings.HasSuffix(r, " Bearer "+secret) {
			t.Errorf("request without the token: %s", r)
		}
		if strings.Contains(r, "/heartbeat") {
			heartbeats++
		}
	}
	if heartbeats == 0 || !strings.HasPrefix(srv.requests()[len(srv.requests())-1], "DELETE ") {
		t.Errorf("requests %q: want heartbeats and a closing DELETE", srv.requests())
	}
}

func TestWithoutTheServersCAHandshakeFails(t *testing.T) {
	srv := newAuthServer(t)
	c, err := client.New(srv.URL, client.WithToken(secret))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Health(t.Context())
	var unreachable *client.UnreachableError
	if !errors.As(err, &unreachable) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("Health against an untrusted certificate = %v", err)
	}
	if len(srv.requests()) != 0 {
		t.Errorf("a request passed an untrusted handshake: %q", srv.requests())
	}
}

func TestMissingTokenReadsClearly(t *testing.T) {
	srv := newAuthServer(t)
	c, err := client.New(srv.URL, client.WithTLS(srv.trust()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(t.Context(), "web", client.LookupOptions{})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Code != client.CodeUnauthenticated {
		t.Fatalf("Lookup without a token = %#v", err)
	}
	if want := "this request needs a token: send Authorization: Bearer saga_… (unauthenticated)"; err.Error() != want {
		t.Errorf("error reads %q, want %q", err, want)
	}
	if _, err := c.Events(t.Context()); !errors.As(err, &apiErr) || apiErr.Code != client.CodeUnauthenticated {
		t.Errorf("Events without a token = %v", err)
	}
}

func TestTokenWithControlCharactersIsRefused(t *testing.T) {
	_, err := client.New("https://saga.example.com", client.WithToken(secret+"\n"))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("New with a token ending in a line break = %v; want an error that does not quote it", err)
	}
}
