package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
)

// sseEvent is one event read off the stream.
type sseEvent struct {
	name string
	data struct {
		Type     string            `json:"type"`
		Service  string            `json:"service"`
		Instance registry.Instance `json:"instance"`
		Index    uint64            `json:"index"`
	}
}

// openStream connects to the event stream over a real HTTP server and
// returns a reader of its lines. The stream closes with the test.
func openStream(t *testing.T, srv *httptest.Server, query string) *bufio.Reader {
	t.Helper()
	// The timeout only guards against a hang; no assertion depends on it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("first line %q: %v", line, err)
	}
	return r
}

// nextEvent reads until the next event, skipping comments.
func nextEvent(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				t.Fatalf("data %q: %v", line, err)
			}
		case line == "" && ev.name != "":
			return ev
		}
	}
}

func TestEventsStreamRegisterDeregisterAndExpireInOrder(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)

	// The real reaper, on the manual clock: it expires what the clock says.
	ctx, stop := context.WithCancel(context.Background())
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		registry.NewReaper(h.metered, h.clock, h.view.Apply, slog.New(slog.DiscardHandler)).Run(ctx)
	}()
	t.Cleanup(func() { stop(); <-reaped })

	web := openStream(t, srv, "?service=web")
	all := openStream(t, srv, "")

	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	h.register(t, "other", `{"id":"o","address":"10.0.0.9","port":80}`)
	if rec := h.do(t, http.MethodDelete, "/api/v1/services/web/instances/a", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("deregister: %d", rec.Code)
	}
	h.register(t, "web", `{"id":"b","address":"10.0.0.2","port":80,"ttl_seconds":1}`)
	if rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/b/heartbeat", ""); rec.Code != http.StatusOK {
		t.Fatalf("heartbeat: %d", rec.Code) // heartbeats are not public events
	}
	h.clock.Advance(2 * time.Second)

	want := []string{"registered web/a 1", "deregistered web/a 2", "registered web/b 3", "expired web/b 4"}
	var got []string
	for range want {
		ev := nextEvent(t, web)
		if ev.name != ev.data.Type || ev.data.Service != ev.data.Instance.Service {
			t.Fatalf("inconsistent event %+v", ev)
		}
		got = append(got, fmt.Sprintf("%s %s/%s %d", ev.name, ev.data.Service, ev.data.Instance.ID, ev.data.Index))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("web stream %v, want %v", got, want)
	}

	// The unfiltered stream also sees the other service, in order.
	wantAll := []string{"registered web/a", "registered other/o", "deregistered web/a", "registered web/b", "expired web/b"}
	got = nil
	for range wantAll {
		ev := nextEvent(t, all)
		got = append(got, ev.name+" "+ev.data.Service+"/"+ev.data.Instance.ID)
	}
	if !slices.Equal(got, wantAll) {
		t.Fatalf("full stream %v, want %v", got, wantAll)
	}
}

func TestEventsStreamSendsKeepAliveComments(t *testing.T) {
	h := newHarness(t, func(o *server.Options) { o.KeepAlive = 10 * time.Millisecond })
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)
	r := openStream(t, srv, "?service=web")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended without a keep-alive: %v", err)
		}
		if line == ": keep-alive\n" {
			return
		}
	}
}

func TestEventsRefusesBadServiceNames(t *testing.T) {
	h := newHarness(t)
	wantError(t, h.do(t, http.MethodGet, "/api/v1/events?service=web&service=-x", ""), 400, "invalid_argument", "service")
}

// Closing the stream must end the handler, not leave it subscribed.
func TestEventsHandlerEndsWhenTheClientLeaves(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.api)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	srv.Close() // blocks until every handler has returned
}
