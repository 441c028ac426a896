package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sagaproject/saga/pkg/registry"
)

// A blocking lookup that the server ends while draining (503 with
// Retry-After) asks again with the same index and returns the change.
func TestBlockingLookupRetriesADrain(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query().Get("index"); got != "7" {
			t.Errorf("try %d asked with index %q; want 7", calls.Load()+1, got)
		}
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"saga is shutting down; ask again"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"service":"web","index":8,"instances":[{"id":"a","port":80}]}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup(context.Background(), "web", LookupOptions{QueryOptions: QueryOptions{Index: 7}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Index != 8 || len(got.Instances) != 1 || calls.Load() != 2 {
		t.Errorf("got %+v after %d tries; want index 8 after 2", got, calls.Load())
	}
}

// A plain lookup reports a 503 at once: only waiting callers wait more.
func TestPlainLookupDoesNotRetry(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	c, _ := New(srv.URL)
	_, err := c.Lookup(context.Background(), "web", LookupOptions{})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || calls.Load() != 1 {
		t.Errorf("err %v after %d tries; want one 503", err, calls.Load())
	}
}

// Follow opens the stream again when the server ends it (and answers 503
// once meanwhile), and passes on no event twice.
func TestFollowReconnects(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"type\":\"registered\",\"service\":\"web\",\"instance\":{\"id\":\"a\"},\"index\":3}\n\n")
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"type\":\"registered\",\"service\":\"web\",\"instance\":{\"id\":\"a\"},\"index\":3}\n\n"+
				"data: {\"type\":\"registered\",\"service\":\"web\",\"instance\":{\"id\":\"b\"},\"index\":4}\n\n")
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := New(srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []string
	err := c.Follow(ctx, []string{"web"}, func(ev registry.Event) error {
		ids = append(ids, ev.Instance.ID)
		if len(ids) == 2 {
			cancel()
		}
		return nil
	})
	if err != nil || len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
		t.Errorf("Follow: %v, events %v; want a then b", err, ids)
	}

	// FollowOpened says when each stream is open, before its events.
	calls.Store(0)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var seq []string
	err = c.FollowOpened(ctx, []string{"web"}, func() { seq = append(seq, "open") }, func(ev registry.Event) error {
		seq = append(seq, ev.Instance.ID)
		if ev.Instance.ID == "b" {
			cancel()
		}
		return nil
	})
	if got := strings.Join(seq, " "); err != nil || got != "open a open b" {
		t.Errorf("FollowOpened: %v, calls %q; want \"open a open b\"", err, got)
	}
}
