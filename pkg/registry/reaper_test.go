package registry_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/registry"
)

// deadlineStore is a unit-test stand-in with just enough of a Store for the
// Reaper: deadlines and ExpireDue. The real stores' expiry is proven by the
// registrytest suite.
type deadlineStore struct {
	registry.Store // nil: the Reaper calls nothing else

	mu        sync.Mutex
	deadlines map[string]time.Time
	index     uint64
	fail      error
	calls     int
}

func (s *deadlineStore) ExpireDue(_ context.Context, now time.Time) ([]registry.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return nil, s.fail
	}
	var events []registry.Event
	for id, deadline := range s.deadlines {
		if !now.Before(deadline) {
			delete(s.deadlines, id)
			s.index++
			events = append(events, registry.Event{Type: registry.EventExpired, Service: "web", Instance: registry.Instance{ID: id}, Index: s.index})
		}
	}
	return events, nil
}

func (s *deadlineStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// applied records the events the Reaper hands on, with the (bubble) time.
type applied struct {
	mu     sync.Mutex
	events []registry.Event
	at     []time.Time
}

func (a *applied) apply(ev registry.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	a.at = append(a.at, time.Now())
}

func TestReaperExpiresWithinOneInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		deadlines := map[string]time.Time{
			"a": begin.Add(1 * time.Second),
			"b": begin.Add(2*time.Second + 100*time.Millisecond),
			"c": begin.Add(time.Hour),
		}
		store := &deadlineStore{deadlines: maps.Clone(deadlines)}
		var got applied
		reaper := registry.NewReaper(store, registry.SystemClock{}, got.apply, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { reaper.Run(ctx); close(done) }()

		time.Sleep(5 * time.Second)
		synctest.Wait()
		got.mu.Lock()
		if len(got.events) != 2 {
			t.Fatalf("applied %d events, want a and b", len(got.events))
		}
		for i, ev := range got.events {
			deadline := deadlines[ev.Instance.ID]
			if ev.Type != registry.EventExpired || got.at[i].Before(deadline) || got.at[i].Sub(deadline) > registry.ReapInterval {
				t.Errorf("%s expired at +%v, deadline +%v: want within %v after it", ev.Instance.ID, got.at[i].Sub(begin), deadline.Sub(begin), registry.ReapInterval)
			}
		}
		got.mu.Unlock()

		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return when its context ended")
		}
	})
}

// A failing store is retried every interval and logged once per outage, not
// once per attempt; expiry resumes when the store answers again.
func TestReaperRetriesQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &deadlineStore{deadlines: map[string]time.Time{"a": time.Now().Add(time.Second)}, fail: errors.New("connection refused")}
		var got applied
		var logs asynctest.LogBuffer
		reaper := registry.NewReaper(store, registry.SystemClock{}, got.apply, slog.New(slog.NewTextHandler(&logs, nil)))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go reaper.Run(ctx)

		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := strings.Count(logs.String(), "expiring instances failed"); n != 1 {
			t.Errorf("logged the outage %d times over %d attempts, want once", n, store.calls)
		}
		if len(got.events) != 0 {
			t.Errorf("applied %v while the store failed", got.events)
		}

		store.setFail(nil)
		time.Sleep(registry.ReapInterval)
		synctest.Wait()
		got.mu.Lock()
		if len(got.events) != 1 || got.events[0].Instance.ID != "a" {
			t.Errorf("after the store came back: applied %v, want a's expiry", got.events)
		}
		got.mu.Unlock()

		store.setFail(errors.New("connection refused"))
		time.Sleep(registry.ReapInterval)
		synctest.Wait()
		if n := strings.Count(logs.String(), "expiring instances failed"); n != 2 {
			t.Errorf("a second outage logged %d warnings in all, want 2", n)
		}
	})
}
