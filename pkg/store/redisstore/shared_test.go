package redisstore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Two stores on one Redis stand for two Saga processes. A change made
// through one reaches the other's Changes within a second, on a standalone
// Redis and across the nodes of a Cluster.
func TestChangesReachOtherProcess(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		testChangesReachOtherProcess(t, redistest.Start(t).URL())
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		testChangesReachOtherProcess(t, redistest.StartCluster(t).URL())
	})
}

func testChangesReachOtherProcess(t *testing.T, url string) {
	a := open(t, redisstore.Options{URL: url})
	b := open(t, redisstore.Options{URL: url})
	now := time.Now().UTC().Truncate(time.Millisecond)

	// Several services, so that in a Cluster they live on different nodes.
	for i := range 6 {
		service := fmt.Sprintf("svc%d", i)
		reg, err := a.Register(t.Context(), registrytest.Instance(service, "a1", 30, now))
		if err != nil {
			t.Fatal(err)
		}
		got := waitChange(t, b.Changes(), time.Second, isEvent(registry.EventRegistered, service, "a1"))
		if got.Index != reg.Index || got.Instance.Address != reg.Instance.Address || !got.Instance.ExpiresAt.Equal(reg.Instance.ExpiresAt) {
			t.Errorf("B saw %+v, want %+v", got, reg)
		}
	}

	// Heartbeats travel too: B needs the new deadline.
	later := now.Add(5 * time.Second)
	if _, err := a.Heartbeat(t.Context(), "svc0", "a1", "", later); err != nil {
		t.Fatal(err)
	}
	hb := waitChange(t, b.Changes(), time.Second, isEvent(registry.EventHeartbeat, "svc0", "a1"))
	if want := later.Add(30 * time.Second); !hb.Instance.ExpiresAt.Equal(want) {
		t.Errorf("B saw deadline %v, want %v", hb.Instance.ExpiresAt, want)
	}

	// And back the other way.
	if _, err := b.Deregister(t.Context(), "svc1", "a1"); err != nil {
		t.Fatal(err)
	}
	waitChange(t, a.Changes(), time.Second, isEvent(registry.EventDeregistered, "svc1", "a1"))

	// Each store reports its own change once: its pub/sub copy is skipped.
	waitChange(t, b.Changes(), time.Second, isEvent(registry.EventDeregistered, "svc1", "a1"))
	select {
	case ev := <-b.Changes():
		t.Errorf("B's feed has more after its own deregistration: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// Both processes reap at once; every instance is expired exactly once, and
// each process's feed carries exactly one expired event per instance. In
// the Cluster the four services live on all three nodes.
func TestExpiryRaceExpiresOnce(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		testExpiryRaceExpiresOnce(t, redistest.Start(t).URL())
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		testExpiryRaceExpiresOnce(t, redistest.StartCluster(t).URL())
	})
}

func testExpiryRaceExpiresOnce(t *testing.T, url string) {
	a := open(t, redisstore.Options{URL: url})
	b := open(t, redisstore.Options{URL: url})
	t0 := registrytest.T0
	const services, each = 4, 25
	for s := range services {
		for i := range each {
			if _, err := a.Register(t.Context(), registrytest.Instance(fmt.Sprintf("svc%d", s), fmt.Sprintf("i%d", i), 1, t0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Let b's subscription deliver the registrations before counting.
	// (In a Cluster, services on different nodes may arrive in any order.)
	last := map[string]bool{}
	for len(last) < services {
		ev := waitChange(t, b.Changes(), time.Second, func(ev registry.Event) bool {
			return ev.Type == registry.EventRegistered && ev.Instance.ID == fmt.Sprintf("i%d", each-1)
		})
		last[ev.Service] = true
	}

	var mu sync.Mutex
	expiredBy := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range []*redisstore.Store{a, b, a, b} {
		wg.Go(func() {
			for step := range 5 {
				events, err := s.ExpireDue(t.Context(), t0.Add(time.Second+time.Duration(step)*time.Millisecond))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, ev := range events {
					expiredBy[ev.Service+"/"+ev.Instance.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(expiredBy) != services*each {
		t.Errorf("%d instances expired, want %d", len(expiredBy), services*each)
	}
	for key, n := range expiredBy {
		if n != 1 {
			t.Errorf("%s expired %d times", key, n)
		}
	}

	for name, s := range map[string]*redisstore.Store{"A": a, "B": b} {
		seen := map[string]int{}
		for len(seen) < services*each {
			ev := waitChange(t, s.Changes(), 2*time.Second, func(ev registry.Event) bool { return ev.Type == registry.EventExpired })
			seen[ev.Service+"/"+ev.Instance.ID]++
		}
		select {
		case ev := <-s.Changes():
			t.Errorf("%s: extra event after every expiry was seen: %+v", name, ev)
		case <-time.After(300 * time.Millisecond):
		}
		for key, n := range seen {
			if n != 1 {
				t.Errorf("%s saw %s expire %d times", name, key, n)
			}
		}
	}
}

// A reader that falls behind loses events but is told so: once it makes
// room, an EventResync comes before the next event.
func TestSlowReaderGetsResync(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := open(t, redisstore.Options{URL: srv.URL()})
	t0 := registrytest.T0
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 60, t0)); err != nil {
		t.Fatal(err)
	}
	// Far more heartbeats than the feed holds, with nobody reading.
	const beats = 5000
	for i := range beats {
		if _, err := s.Heartbeat(t.Context(), "web", "a", "", t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	for done := false; !done; {
		select {
		case <-s.Changes():
			received++
		default:
			done = true
		}
	}
	if received >= beats {
		t.Fatalf("the feed held all %d events; the test needs it to overflow", received)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", t0.Add(beats*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if ev := waitChange(t, s.Changes(), time.Second, func(registry.Event) bool { return true }); ev.Type != registry.EventResync {
		t.Fatalf("first event after the overflow: %+v, want resync", ev)
	}
	if ev := waitChange(t, s.Changes(), time.Second, func(registry.Event) bool { return true }); ev.Type != registry.EventHeartbeat {
		t.Fatalf("event after the resync: %+v, want the heartbeat", ev)
	}
}
