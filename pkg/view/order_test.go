package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// drain returns the events a subscription holds now, as "type id index".
func drain(sub *Subscription) []string {
	var got []string
	for {
		select {
		case ev := <-sub.Events():
			got = append(got, fmt.Sprintf("%s %s %d", ev.Type, ev.Instance.ID, ev.Index))
		default:
			return got
		}
	}
}

// The bug this guards against: the write path applied its own event (index
// 2) before the change feed brought another write's event (index 1), and
// the view dropped the older one for good.
func TestEventsOutOfOrderAreAllApplied(t *testing.T) {
	v, _ := newView(t)
	sub := v.Subscribe(nil)
	defer sub.Close()
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	b := inst("web", "b", time.Minute, registry.StatusPassing, nil, nil)

	v.Apply(registered(b, 2)) // the writer of b reads it at once...
	if _, ok := v.Instance("web", "b"); !ok {
		t.Fatal("a write is not visible to its writer before the events below it arrive")
	}
	if got := v.ServiceIndex("web"); got != 0 {
		t.Fatalf("index %d before event 1 arrived; a reader at 2 would never see a", got)
	}
	if got := drain(sub); len(got) != 0 {
		t.Fatalf("published %v ahead of event 1", got)
	}
	v.Apply(registered(a, 1)) // ...and the older event still counts
	v.Apply(registered(b, 2)) // the feed's copy of b changes nothing

	got, index := v.Lookup("web", Query{})
	if !slices.Equal(ids(got), []string{"a", "b"}) || index != 2 {
		t.Fatalf("lookup %v at %d, want [a b] at 2", ids(got), index)
	}
	if want := []string{"registered a 1", "registered b 2"}; !slices.Equal(drain(sub), want) {
		t.Fatalf("events not in index order, or not all: want %v", want)
	}
	if v.Lagging(0) {
		t.Fatal("lagging with no gap left")
	}
}

func TestALaterChangeOfOneInstanceWinsWhateverTheOrder(t *testing.T) {
	v, _ := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))
	moved := a
	moved.Port = 9090
	// Deregistered at 3, then registered again at 4; the events arrive 4, 3, 2.
	v.Apply(registered(moved, 4))
	v.Apply(registry.Event{Type: registry.EventDeregistered, Service: "web", Instance: a, Index: 3})
	if got, ok := v.Instance("web", "a"); !ok || got.Port != 9090 {
		t.Fatalf("an older deregistration undid a later registration: %+v %v", got, ok)
	}
	v.Apply(registered(inst("web", "b", time.Minute, registry.StatusPassing, nil, nil), 2))
	if got, index := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a", "b"}) || index != 4 {
		t.Fatalf("lookup %v at %d", ids(got), index)
	}
}

func TestWatcherWakesOnlyWhenEveryEarlierEventIsIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, _ := newView(t)
		v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, nil, nil), 1))
		woke := make(chan uint64, 1)
		go func() { woke <- v.WaitService(t.Context(), "web", 1) }()
		synctest.Wait()

		v.Apply(registered(inst("web", "c", time.Minute, registry.StatusPassing, nil, nil), 3))
		synctest.Wait()
		select {
		case got := <-woke:
			t.Fatalf("woke at %d with event 2 missing", got)
		default:
		}
		v.Apply(registered(inst("web", "b", time.Minute, registry.StatusPassing, nil, nil), 2))
		if got := <-woke; got != 3 {
			t.Fatalf("woke at %d, want 3", got)
		}
	})
}

func TestAGapThatStaysOpenIsReportedAndALoadFillsIt(t *testing.T) {
	v, clock := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	b := inst("web", "b", time.Minute, registry.StatusPassing, nil, nil)
	c := inst("web", "c", time.Minute, registry.StatusPassing, nil, nil)
	d := inst("web", "d", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))
	sub := v.Subscribe(nil)
	defer sub.Close()
	v.Apply(registered(c, 3)) // event 2 (b) is lost
	v.Apply(registered(d, 5)) // event 4 (d's predecessor... nothing) is not here yet either
	if v.Lagging(time.Second) {
		t.Fatal("lagging at once")
	}
	clock.Advance(time.Second)
	if !v.Lagging(time.Second) {
		t.Fatal("a gap open for a second is not reported")
	}
	// The snapshot was read after event 3, before event 5.
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
		"web": {Index: 3, Instances: []registry.Instance{a, b, c}},
	}})
	got, index := v.Lookup("web", Query{})
	if !slices.Equal(ids(got), []string{"a", "b", "c", "d"}) || index != 3 {
		t.Fatalf("after the load: %v at %d, want [a b c d] at 3 (d held above)", ids(got), index)
	}
	if want := []string{"registered c 3", "registered b 3"}; !slices.Equal(drain(sub), want) {
		t.Fatalf("want %v", want)
	}
	v.Apply(registry.Event{Type: registry.EventUpdated, Service: "web", Instance: a, Index: 4})
	if _, index := v.Lookup("web", Query{}); index != 5 {
		t.Fatalf("index %d, want 5 once event 4 filled the last gap", index)
	}
	if want := []string{"updated a 4", "registered d 5"}; !slices.Equal(drain(sub), want) {
		t.Fatalf("want %v", want)
	}
}

func TestALoadAtTheSameIndexRepairsWhatDiffers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, _ := newView(t)
		a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
		b := inst("web", "b", time.Minute, registry.StatusPassing, nil, nil)
		v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
			"web": {Index: 2, Instances: []registry.Instance{a}}, // b missing, as the old view lost it
		}})
		sub := v.Subscribe(nil)
		defer sub.Close()
		woke := make(chan uint64, 1)
		go func() { woke <- v.WaitService(t.Context(), "web", 2) }()
		synctest.Wait()

		v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
			"web": {Index: 2, Instances: []registry.Instance{a, b}},
		}})
		if got, _ := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a", "b"}) {
			t.Fatalf("a load at the same index did not repair: %v", ids(got))
		}
		if want := []string{"registered b 2"}; !slices.Equal(drain(sub), want) {
			t.Fatalf("want %v", want)
		}
		synctest.Wait()
		select {
		case <-woke:
		default:
			t.Fatal("the repair did not wake the service's watchers")
		}
	})
}

func TestFrozenViewServesWhatWasLiveAndThawsAfterTheGrace(t *testing.T) {
	v, clock := newView(t)
	a := inst("web", "a", 10*time.Second, registry.StatusPassing, nil, nil)
	b := inst("web", "b", 20*time.Second, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))
	v.Apply(registered(b, 2))
	v.LookupJSON("web", Query{}) // a cached answer must not outlive the freeze

	clock.Advance(5 * time.Second)
	v.Freeze(clock.Now())
	clock.Advance(time.Minute) // both deadlines pass while the store is away
	if !v.Stale() {
		t.Fatal("not stale while frozen")
	}
	if got, _ := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a", "b"}) {
		t.Fatalf("frozen lookup %v, want both instances live at the freeze", ids(got))
	}
	if _, ok := v.Instance("web", "a"); !ok {
		t.Fatal("frozen view hides an instance")
	}
	if c, _ := v.Health("web"); c.Passing != 2 {
		t.Fatalf("frozen health %+v", c)
	}
	if entries, _ := v.Catalog(); len(entries) != 1 || entries[0].Instances != 2 {
		t.Fatalf("frozen catalogue %+v", entries)
	}

	// The store is back and granted a TTL of grace to a only (b was removed
	// meanwhile, say): the view takes the snapshot, then thaws.
	graced := a.Renewed(clock.Now(), "")
	graced.LastHeartbeat = a.LastHeartbeat
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
		"web": {Index: 3, Instances: []registry.Instance{graced}},
	}})
	v.Thaw()
	if v.Stale() {
		t.Fatal("stale after thaw")
	}
	if got, _ := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a"}) {
		t.Fatalf("after thaw %v, want [a]", ids(got))
	}
	clock.Advance(10 * time.Second)
	if got, _ := v.Lookup("web", Query{}); len(got) != 0 {
		t.Fatalf("expiry did not resume after thaw: %v", ids(got))
	}
}

// fakeStore answers pings as told; a stand-in for the logic test of Guard.
type fakeStore struct {
	mu   sync.Mutex
	down bool
	snap registry.Snapshot
}

func (f *fakeStore) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return registry.ErrUnavailable
	}
	return nil
}

func (f *fakeStore) Snapshot(context.Context) (registry.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return registry.Snapshot{}, errors.New("down")
	}
	return f.snap, nil
}

func (f *fakeStore) set(down bool, snap registry.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.snap = down, snap
}

func TestGuardFreezesAtTheLastAnswerAndThawsWithTheGracedSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := registry.SystemClock{} // synctest's fake time
		v := New(clock)
		now := clock.Now()
		a := registry.Instance{Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, TTLSeconds: 2,
			Status: registry.StatusPassing, RegisteredAt: now, LastHeartbeat: now, ExpiresAt: now.Add(2 * time.Second)}
		v.Apply(registered(a, 1))
		store := &fakeStore{}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go Guard(ctx, store, v, clock, GuardInterval, slog.New(slog.DiscardHandler))

		time.Sleep(time.Second)
		store.set(true, registry.Snapshot{})
		time.Sleep(5 * time.Second) // far past a's deadline
		if !v.Stale() {
			t.Fatal("guard did not freeze the view while the store was down")
		}
		if _, ok := v.Instance("web", "a"); !ok {
			t.Fatal("an instance live when the store went away vanished")
		}
		graced := a.Renewed(clock.Now(), "")
		store.set(false, registry.Snapshot{Services: map[string]registry.ServiceSnapshot{"web": {Index: 1, Instances: []registry.Instance{graced}}}})
		time.Sleep(time.Second)
		if v.Stale() {
			t.Fatal("guard did not thaw once the store answered")
		}
		if _, ok := v.Instance("web", "a"); !ok {
			t.Fatal("the instance expired before its grace")
		}
		time.Sleep(2 * time.Second)
		if _, ok := v.Instance("web", "a"); ok {
			t.Fatal("expiry did not resume")
		}
	})
}

// bigService loads n instances of one service.
func bigService(v *View, name string, n int) []registry.Instance {
	list := make([]registry.Instance, n)
	for i := range list {
		list[i] = inst(name, fmt.Sprintf("i%06d", i), time.Minute, registry.StatusPassing, []string{"t"}, map[string]string{"zone": "a"})
	}
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{name: {Index: 1, Instances: list}}})
	return list
}

func TestConcurrentReadersOfABigServiceShareOneEncoding(t *testing.T) {
	v, clock := newView(t)
	list := bigService(v, "big", 2*bigAnswer)
	v.LookupJSON("big", Query{})
	if s := v.Stats(); s.Misses != 1 {
		t.Fatalf("misses %d", s.Misses)
	}

	// A heartbeat on a big service: the answer is reused for renewSlack...
	clock.Advance(100 * time.Millisecond)
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "big", Instance: list[0].Renewed(clock.Now(), "")})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { v.LookupJSON("big", Query{}) })
	}
	wg.Wait()
	if s := v.Stats(); s.Misses != 1 {
		t.Fatalf("8 readers after a heartbeat encoded %d times; want the cached answer", s.Misses-1)
	}
	// ...then encoded once more, shared by every concurrent reader.
	clock.Advance(renewSlack)
	for range 8 {
		wg.Go(func() { v.LookupJSON("big", Query{}) })
	}
	wg.Wait()
	if s := v.Stats(); s.Misses != 2 {
		t.Fatalf("8 concurrent readers encoded %d times, want once", s.Misses-1)
	}
	body, _ := v.LookupJSON("big", Query{})
	var decoded lookupBody
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatal(err)
	}
	if got := decoded.Instances[0]; !got.ExpiresAt.Equal(clock.Now().Add(time.Minute - renewSlack)) {
		t.Fatalf("expires_at %v after renewSlack: the heartbeat is not in the answer", got.ExpiresAt)
	}

	// Any change but a heartbeat makes the answer stale at once.
	v.Apply(registry.Event{Type: registry.EventDeregistered, Service: "big", Instance: list[1], Index: 2})
	body, _ = v.LookupJSON("big", Query{})
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatal(err)
	}
	if len(decoded.Instances) != 2*bigAnswer-1 || decoded.Index != 2 {
		t.Fatalf("after a deregistration: %d instances at %d", len(decoded.Instances), decoded.Index)
	}
}

func TestCachedAnswersStayWithinTheBudget(t *testing.T) {
	v, _ := newView(t)
	bigService(v, "big", 2*bigAnswer)
	for i := range maxCachedQueries * 3 {
		v.LookupJSON("big", Query{Tags: []string{"t"}, Meta: []MetaMatch{{Key: "zone", Value: "a"}, {Key: "n", Value: fmt.Sprint(i)}}})
		v.LookupJSON("big", Query{Tags: []string{fmt.Sprint(i)}})
		v.LookupJSON("big", Query{Status: StatusAny, Tags: []string{"t", fmt.Sprint(i)}})
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	var held int64
	for _, svc := range v.services {
		if len(svc.cache) > maxCachedQueries {
			t.Fatalf("%d cached queries", len(svc.cache))
		}
		for _, e := range svc.cache {
			held += int64(cap(e.body)) // the memory held, a reused buffer's spare room included
		}
	}
	if held != v.cacheBytes || held > cacheBudget {
		t.Fatalf("held %d bytes, counted %d, budget %d", held, v.cacheBytes, cacheBudget)
	}
}
