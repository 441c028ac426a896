package view

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// scriptedFeed is a change feed and snapshot whose contents a test sets;
// for the logic of Follow (the real stores are followed in the daemon's
// and the stores' own tests).
type scriptedFeed struct {
	mu        sync.Mutex
	changes   chan registry.Event
	snapshot  registry.Snapshot
	snapshots int
}

func newScriptedFeed() *scriptedFeed {
	return &scriptedFeed{changes: make(chan registry.Event, 16), snapshot: registry.Snapshot{Services: map[string]registry.ServiceSnapshot{}}}
}

func (s *scriptedFeed) Changes() <-chan registry.Event { return s.changes }

func (s *scriptedFeed) Snapshot(context.Context) (registry.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots++
	return s.snapshot, nil
}

func (s *scriptedFeed) set(f func(s *scriptedFeed)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *scriptedFeed) snapshotCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

func TestFollowAppliesEventsAndReloadsOnResyncGapsAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := registry.SystemClock{} // synctest's fake time
		feed := newScriptedFeed()
		v := New(clock)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		const refresh = 30 * time.Second
		go func() { Follow(ctx, feed, v, refresh, slog.New(slog.DiscardHandler)); close(done) }()
		instance := func(id string) registry.Instance {
			return registry.NewInstance("web", registry.Registration{ID: id, Address: "10.0.0.1", Port: 80}, clock.Now(), time.Hour)
		}

		feed.changes <- registry.Event{Type: registry.EventRegistered, Service: "web", Instance: instance("a"), Index: 1}
		synctest.Wait()
		if _, ok := v.Instance("web", "a"); !ok {
			t.Fatal("a registered event on the feed did not reach the view")
		}

		// Lost events: the store sends a resync, Follow reloads a snapshot.
		feed.set(func(s *scriptedFeed) {
			s.snapshot.Services["web"] = registry.ServiceSnapshot{Index: 5, Instances: []registry.Instance{instance("b")}}
		})
		feed.changes <- registry.Event{Type: registry.EventResync}
		synctest.Wait()
		if _, ok := v.Instance("web", "b"); !ok || v.ServiceIndex("web") != 5 {
			t.Fatal("a resync did not reload the view from a snapshot")
		}

		// A gap that stays open (event 6 never comes) is filled by a reload.
		before := feed.snapshotCount()
		feed.set(func(s *scriptedFeed) {
			s.snapshot.Services["web"] = registry.ServiceSnapshot{Index: 7, Instances: []registry.Instance{instance("b"), instance("c"), instance("d")}}
		})
		feed.changes <- registry.Event{Type: registry.EventRegistered, Service: "web", Instance: instance("d"), Index: 7}
		time.Sleep(gapTimeout + time.Second)
		synctest.Wait()
		if feed.snapshotCount() == before || v.ServiceIndex("web") != 7 {
			t.Fatalf("a gap left open for %s was not filled: index %d", gapTimeout, v.ServiceIndex("web"))
		}
		if _, ok := v.Instance("web", "c"); !ok {
			t.Fatal("the reload did not bring the lost change")
		}

		// The periodic refresh reloads even without a resync.
		before = feed.snapshotCount()
		time.Sleep(refresh)
		synctest.Wait()
		if after := feed.snapshotCount(); after != before+1 {
			t.Fatalf("%d snapshots in one refresh interval, want 1", after-before)
		}

		cancel()
		<-done
	})
}
