package redisstore

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// A mass expiry goes out in bounded scripts, one round trip after another,
// so Redis serves other clients between them; every instance still
// expires exactly once, in one call of ExpireDue.
func TestMassExpiryIsChunked(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	const n = 5*expireChunk + 37
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Register(t.Context(), registrytest.Instance("crowd", fmt.Sprint("i", i), 10, t0)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() { // one that stays
		_, err := s.Register(t.Context(), registrytest.Instance("crowd", "stays", 60, t0))
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	log := &commandLog{}
	s.client.AddHook(log)
	events, err := s.ExpireDue(t.Context(), t0.Add(11*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range events {
		if ev.Type != registry.EventExpired || ev.Service != "crowd" {
			t.Fatalf("unexpected event %+v", ev)
		}
		seen[ev.Instance.ID]++
	}
	if len(seen) != n || len(events) != n {
		t.Fatalf("expired %d events for %d instances, want %d each once", len(events), len(seen), n)
	}
	if _, ok := seen["stays"]; ok {
		t.Fatal("the instance with a later deadline expired")
	}
	left, err := s.client.ZCard(t.Context(), serviceKeys("crowd")[3]).Result()
	if err != nil || left != 1 {
		t.Fatalf("Redis holds %d deadlines (%v), want the one that stays", left, err)
	}
	trips := scriptTrips(log)
	if want := n/expireChunk + 1; trips < want {
		t.Fatalf("the expiry took %d round trips of scripts (%v), want at least %d of at most %d instances each", trips, log.trips, want, expireChunk)
	}
}

// Grace after an outage goes out a page at a time too, and still moves
// every deadline, with one notice each.
func TestGraceIsPaged(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	const n = 3*expireChunk + 11
	for i := range n {
		if _, err := s.Register(t.Context(), registrytest.Instance("crowd", fmt.Sprint("i", i), 10, t0)); err != nil {
			t.Fatal(err)
		}
	}
	sub := s.client.Subscribe(t.Context(), changeChannel)
	defer sub.Close()
	if _, err := sub.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	log := &commandLog{}
	s.client.AddHook(log)
	graceAt := t0.Add(9 * time.Second)
	if err := s.GrantGrace(t.Context(), graceAt); err != nil {
		t.Fatal(err)
	}
	deadlines, err := s.client.ZRangeWithScores(t.Context(), serviceKeys("crowd")[3], 0, -1).Result()
	if err != nil || len(deadlines) != n {
		t.Fatalf("Redis holds %d deadlines (%v), want %d", len(deadlines), err, n)
	}
	want := float64(graceAt.Add(10 * time.Second).UnixMilli())
	for _, d := range deadlines {
		if d.Score != want {
			t.Fatalf("%v's deadline is %v, want %v (grace of one TTL)", d.Member, d.Score, want)
		}
	}
	notices := map[string]int{}
	for len(notices) < n {
		msg, err := sub.ReceiveMessage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s.deliver(msg.Payload)
		if err != nil {
			t.Fatal(err)
		}
		notices[ev.Instance.ID]++
	}
	for id, c := range notices {
		if c != 1 {
			t.Fatalf("%s got %d grace notices, want 1", id, c)
		}
	}
	pages := scriptTrips(log)
	if pages < 3 {
		t.Fatalf("grace took %d round trips (%v), want one per page of about %d", pages, log.trips, expireChunk)
	}
}

// A snapshot of a big service is read a page at a time. While others
// register new instances, it still holds every instance whose registration
// is at or below the index it is labelled with.
func TestSnapshotIsPaged(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	const n = 3*expireChunk + 11
	indexOf := sync.Map{} // id -> index of its registration
	for i := range n {
		id := fmt.Sprint("i", i)
		ev, err := s.Register(t.Context(), registrytest.Instance("crowd", id, 60, t0))
		if err != nil {
			t.Fatal(err)
		}
		indexOf.Store(id, ev.Index)
	}

	log := &commandLog{}
	s.client.AddHook(log)
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Services["crowd"]
	if len(got.Instances) != n || got.Index != n {
		t.Fatalf("snapshot holds %d instances at index %d, want %d at %d", len(got.Instances), got.Index, n, n)
	}
	pages := scriptTrips(log)
	if pages < 3 {
		t.Fatalf("the snapshot took %d round trips (%v), want one per page of about %d", pages, log.trips, expireChunk)
	}

	// Now with registrations going on.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			id := fmt.Sprint("late", i)
			ev, err := s.Register(t.Context(), registrytest.Instance("crowd", id, 60, t0))
			if err != nil {
				t.Error(err)
				return
			}
			indexOf.Store(id, ev.Index)
		}
	})
	for range 3 {
		snap, err := s.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got := snap.Services["crowd"]
		held := map[string]bool{}
		for _, in := range got.Instances {
			held[in.ID] = true
		}
		indexOf.Range(func(id, index any) bool {
			if index.(uint64) <= got.Index && !held[id.(string)] {
				t.Errorf("snapshot at index %d misses %s, registered at %d", got.Index, id, index)
				return false
			}
			return true
		})
	}
	close(stop)
	wg.Wait()
}

// scriptTrips counts the round trips in log that ran scripts.
func scriptTrips(log *commandLog) int {
	n := 0
	for _, trip := range log.trips {
		if strings.Contains(trip, "evalsha") {
			n++
		}
	}
	return n
}
