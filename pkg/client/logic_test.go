package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// These tests cover the client's own logic (stream parsing, the keep-alive
// loop) against hand-written answers; client_test.go proves the client
// against the real server.

func TestEventStreamParsesServerSentEvents(t *testing.T) {
	stream := ": connected\r\n\r\n" +
		"event: registered\r\n" +
		`data: {"type":"registered","service":"web","instance":{"id":"a","port":80},"index":3}` + "\r\n\r\n" +
		": keep-alive\n\n" +
		"id: 4\n" +
		"event: expired\n" +
		`data: {"service":"web",` + "\n" +
		`data: "instance":{"id":"b"},"index":4}` + "\n\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query()["service"]; len(got) != 2 || got[0] != "web" || got[1] != "api" {
			t.Errorf("service filter = %v, want [web api]", got)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, stream)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.Events(context.Background(), "web", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.Close() })

	var got []registry.Event
	for ev, err := range events.All() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2: %+v", len(got), got)
	}
	if got[0].Type != registry.EventRegistered || got[0].Instance.ID != "a" || got[0].Index != 3 {
		t.Errorf("first event = %+v", got[0])
	}
	// The type comes from the event: line when the data has none.
	if got[1].Type != registry.EventExpired || got[1].Instance.ID != "b" || got[1].Index != 4 {
		t.Errorf("second event = %+v", got[1])
	}
}

// fakeServer answers the keep-alive calls in memory, inside a synctest
// bubble, and records them.
type fakeServer struct {
	mu         sync.Mutex
	calls      []string
	known      bool // whether the instance is registered
	forgetNext bool // answer the next heartbeat with 404
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodPost:
		var reg registry.Registration
		_ = json.NewDecoder(r.Body).Decode(&reg)
		if reg.ID == "" {
			reg.ID = "generated"
		}
		f.known = true
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"service": "web", "id": reg.ID, "address": reg.Address, "port": reg.Port,
			"ttl_seconds": 30, "status": "passing", "heartbeat_interval_seconds": 10,
		})
	case http.MethodPut:
		if !f.known || f.forgetNext {
			f.known, f.forgetNext = false, false
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"instance web/generated not found"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"expires_at":"2026-01-01T00:00:30Z","ttl_seconds":30}`)
	case http.MethodDelete:
		f.known = false
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeServer) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// handlerTransport sends requests straight to a handler, so the keep-alive
// loop runs inside a synctest bubble without real sockets.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestKeepAliveHeartbeatsRegistersAgainAndDeregisters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeServer{}
		c, err := New("127.0.0.1:1", WithHTTPClient(&http.Client{Transport: handlerTransport{fake}}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var registrations []Registered
		done := make(chan error)
		go func() {
			done <- c.KeepAlive(ctx, "web", registry.Registration{Address: "10.0.0.1", Port: 80}, KeepAliveOptions{
				OnRegister: func(r Registered) { registrations = append(registrations, r) },
			})
		}()

		time.Sleep(25 * time.Second) // heartbeats at 10 s and 20 s
		synctest.Wait()
		fake.mu.Lock()
		fake.forgetNext = true
		fake.mu.Unlock()
		time.Sleep(10 * time.Second) // the heartbeat at 30 s gets 404: register again
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("KeepAlive returned %v", err)
		}

		want := []string{
			"POST /api/v1/services/web/instances",
			"PUT /api/v1/services/web/instances/generated/heartbeat",
			"PUT /api/v1/services/web/instances/generated/heartbeat",
			"PUT /api/v1/services/web/instances/generated/heartbeat",
			"POST /api/v1/services/web/instances",
			"DELETE /api/v1/services/web/instances/generated",
		}
		if got := fake.log(); !slices.Equal(got, want) {
			t.Errorf("calls:\n%q\nwant:\n%q", got, want)
		}
		if len(registrations) != 2 || registrations[1].Instance.ID != "generated" {
			t.Errorf("registrations = %+v, want two of id generated", registrations)
		}
		if registrations[0].HeartbeatInterval != 10*time.Second || !registrations[0].Created {
			t.Errorf("first registration = %+v, want interval 10s and created", registrations[0])
		}
	})
}

func TestKeepAliveRetriesFailuresWithGrowingPauses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeServer{}
		failing := true
		var mu sync.Mutex
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fail := failing && r.Method == http.MethodPut
			mu.Unlock()
			if fail {
				fake.mu.Lock()
				fake.calls = append(fake.calls, "PUT failed")
				fake.mu.Unlock()
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"store unavailable"}}`)
				return
			}
			fake.ServeHTTP(w, r)
		})
		c, err := New("127.0.0.1:1", WithHTTPClient(&http.Client{Transport: handlerTransport{h}}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var failures []error
		done := make(chan error)
		go func() {
			done <- c.KeepAlive(ctx, "web", registry.Registration{ID: "w1", Address: "10.0.0.1", Port: 80}, KeepAliveOptions{
				OnError: func(err error) { failures = append(failures, err) },
			})
		}()
		// Heartbeats fail at 10 s, then 1 s, 2 s and 4 s later (17 s).
		time.Sleep(18 * time.Second)
		synctest.Wait()
		mu.Lock()
		failing = false
		mu.Unlock()
		time.Sleep(8 * time.Second) // the next try, 8 s later (25 s), succeeds
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("KeepAlive returned %v", err)
		}
		if len(failures) != 4 {
			t.Fatalf("got %d failures, want 4: %v", len(failures), failures)
		}
		if !errors.Is(failures[0], registry.ErrUnavailable) {
			t.Errorf("failure = %v, want one matching registry.ErrUnavailable", failures[0])
		}
		calls := fake.log()
		if got := calls[len(calls)-2]; got != "PUT /api/v1/services/web/instances/w1/heartbeat" {
			t.Errorf("call before deregistering = %q, want a successful heartbeat", got)
		}
	})
}

func TestKeepAliveReturnsFirstRegistrationError(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"code":"invalid_argument","message":"70000 is out of range 1-65535","field":"port"}}`)
	})
	c, err := New("127.0.0.1:1", WithHTTPClient(&http.Client{Transport: handlerTransport{h}}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.KeepAlive(context.Background(), "web", registry.Registration{Address: "10.0.0.1", Port: 70000}, KeepAliveOptions{})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Field != "port" {
		t.Fatalf("KeepAlive = %v, want the *Error naming port", err)
	}
}

func TestHeartbeatIntervalStaysBelowTTL(t *testing.T) {
	tests := []struct {
		advice time.Duration
		ttl    int
		want   time.Duration
	}{
		{advice: 10 * time.Second, ttl: 30, want: 10 * time.Second},
		{advice: 0, ttl: 30, want: 15 * time.Second},
		{advice: 60 * time.Second, ttl: 30, want: 15 * time.Second},
		{advice: 0, ttl: 1, want: 500 * time.Millisecond},
		{advice: 0, ttl: 0, want: time.Second},
	}
	for _, tt := range tests {
		r := Registered{Instance: registry.Instance{TTLSeconds: tt.ttl}, HeartbeatInterval: tt.advice}
		if got := heartbeatInterval(r); got != tt.want {
			t.Errorf("heartbeatInterval(advice %s, ttl %ds) = %s, want %s", tt.advice, tt.ttl, got, tt.want)
		}
	}
}

func TestHealthReportOfADegradedServerIsNotAnError(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantHealthy bool
		wantErrCode string
	}{
		{"healthy", 200, `{"status":"healthy","service":"saga","storage":"embedded","cache":{"size":5,"hit_ratio":0.5}}`, true, ""},
		{"degraded", 503, `{"status":"degraded","service":"saga","storage":"redis","redis":"disconnected"}`, false, ""},
		{"an error instead of a report", 503, `{"error":{"code":"unavailable","message":"draining"}}`, false, CodeUnavailable},
		{"a proxy's page", 502, `bad gateway`, false, CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c, err := New("127.0.0.1:1", WithHTTPClient(&http.Client{Transport: handlerTransport{h}}))
			if err != nil {
				t.Fatal(err)
			}
			report, err := c.Health(context.Background())
			if tt.wantErrCode != "" {
				var apiErr *Error
				if !errors.As(err, &apiErr) || apiErr.Code != tt.wantErrCode {
					t.Fatalf("Health = %+v, %v; want an error with code %s", report, err, tt.wantErrCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Health: %v", err)
			}
			if report.Healthy() != tt.wantHealthy {
				t.Errorf("Healthy() = %v, want %v (%+v)", report.Healthy(), tt.wantHealthy, report)
			}
		})
	}
}
