package view

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

var start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newView(t *testing.T) (*View, *registry.ManualClock) {
	t.Helper()
	clock := registry.NewManualClock(start)
	return New(clock), clock
}

// inst builds an instance registered at start with the given TTL.
func inst(service, id string, ttl time.Duration, status registry.Status, tags []string, meta map[string]string) registry.Instance {
	return registry.Instance{
		Service: service, ID: id, Address: "10.0.0.1", Port: 8080,
		Tags: tags, Metadata: meta, TTLSeconds: int(ttl / time.Second), Status: status,
		RegisteredAt: start, LastHeartbeat: start, ExpiresAt: start.Add(ttl),
	}
}

func registered(in registry.Instance, index uint64) registry.Event {
	return registry.Event{Type: registry.EventRegistered, Service: in.Service, Instance: in, Index: index}
}

func ids(list []registry.Instance) []string {
	out := []string{}
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}

func TestApplyIsIdempotentAndOrdered(t *testing.T) {
	v, _ := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))
	v.Apply(registered(a, 1)) // the same event from the change feed

	moved := a
	moved.Port = 9090
	v.Apply(registry.Event{Type: registry.EventUpdated, Service: "web", Instance: moved, Index: 1}) // stale index
	got, ok := v.Instance("web", "a")
	if !ok || got.Port != 8080 {
		t.Fatalf("stale update applied: %+v", got)
	}
	v.Apply(registry.Event{Type: registry.EventUpdated, Service: "web", Instance: moved, Index: 3})
	if got, _ := v.Instance("web", "a"); got.Port != 9090 {
		t.Fatalf("update not applied: port %d", got.Port)
	}
	v.Apply(registry.Event{Type: registry.EventDeregistered, Service: "web", Instance: a, Index: 2}) // older than 3
	if _, ok := v.Instance("web", "a"); !ok {
		t.Fatal("deregister with an old index removed the instance")
	}
	v.Apply(registry.Event{Type: registry.EventDeregistered, Service: "web", Instance: a, Index: 4})
	if _, ok := v.Instance("web", "a"); ok {
		t.Fatal("instance still there after deregister")
	}
	if got := v.ServiceIndex("web"); got != 4 {
		t.Fatalf("index = %d, want 4 (kept after the last instance left)", got)
	}
	if got := v.Stats().Size; got != 0 {
		t.Fatalf("size = %d, want 0", got)
	}
}

func TestHeartbeatOnlyMovesDeadlineLater(t *testing.T) {
	v, _ := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))

	later := a.Renewed(start.Add(30*time.Second), "")
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: later, Index: 1})
	earlier := a.Renewed(start.Add(10*time.Second), "")
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: earlier, Index: 1})

	got, _ := v.Instance("web", "a")
	if !got.ExpiresAt.Equal(later.ExpiresAt) {
		t.Fatalf("expires_at = %v, want %v", got.ExpiresAt, later.ExpiresAt)
	}
	if v.ServiceIndex("web") != 1 {
		t.Fatal("a heartbeat moved the index")
	}
	// A heartbeat for an instance the view does not hold adds nothing.
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: inst("web", "ghost", time.Minute, registry.StatusPassing, nil, nil)})
	if _, ok := v.Instance("web", "ghost"); ok {
		t.Fatal("heartbeat created an instance")
	}
}

// A heartbeat of an earlier registration of the same id, arriving late,
// does not lend its deadline to the registration that replaced it: the
// new one, with a shorter TTL, must expire on its own deadline.
func TestLateHeartbeatOfAReplacedRegistrationIsIgnored(t *testing.T) {
	v, clock := newView(t)
	old := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(old, 1))

	at := start.Add(10 * time.Second)
	replaced := old
	replaced.TTLSeconds, replaced.RegisteredAt, replaced.LastHeartbeat, replaced.ExpiresAt = 5, at, at, at.Add(5*time.Second)
	v.Apply(registry.Event{Type: registry.EventUpdated, Service: "web", Instance: replaced, Index: 2})
	// The old registration's heartbeat, sent before the replacement.
	late := old.Renewed(start.Add(9*time.Second), "")
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: late, Index: 1})

	got, _ := v.Instance("web", "a")
	if !got.ExpiresAt.Equal(replaced.ExpiresAt) {
		t.Fatalf("expires_at = %v, want the replacement's %v", got.ExpiresAt, replaced.ExpiresAt)
	}
	clock.Advance(replaced.ExpiresAt.Add(time.Millisecond).Sub(clock.Now()))
	if list, _ := v.Lookup("web", Query{Status: StatusAny}); len(list) != 0 {
		t.Fatalf("lookup past the replacement's deadline = %v, want nothing", ids(list))
	}
}

func TestLookupFilters(t *testing.T) {
	v, _ := newView(t)
	v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, []string{"v1", "eu"}, map[string]string{"zone": "a"}), 1))
	v.Apply(registered(inst("web", "b", time.Minute, registry.StatusWarning, []string{"v1"}, map[string]string{"zone": "b"}), 2))
	v.Apply(registered(inst("web", "c", time.Minute, registry.StatusCritical, []string{"v2", "eu"}, map[string]string{"zone": "a"}), 3))
	v.Apply(registered(inst("db", "d", time.Minute, registry.StatusPassing, nil, nil), 1))

	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"default keeps passing and warning", Query{}, []string{"a", "b"}},
		{"passing only", Query{Status: StatusPassing}, []string{"a"}},
		{"any includes critical", Query{Status: StatusAny}, []string{"a", "b", "c"}},
		{"one tag", Query{Tags: []string{"v1"}}, []string{"a", "b"}},
		{"all tags must match", Query{Tags: []string{"v1", "eu"}}, []string{"a"}},
		{"tag and any", Query{Tags: []string{"eu"}, Status: StatusAny}, []string{"a", "c"}},
		{"meta", Query{Meta: []MetaMatch{{"zone", "a"}}, Status: StatusAny}, []string{"a", "c"}},
		{"all metas must match", Query{Meta: []MetaMatch{{"zone", "a"}, {"zone", "b"}}}, []string{}},
		{"missing meta key", Query{Meta: []MetaMatch{{"rack", "1"}}}, []string{}},
		{"unknown tag", Query{Tags: []string{"nope"}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, index := v.Lookup("web", tt.q)
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("got %v, want %v", ids(got), tt.want)
			}
			if index != 3 {
				t.Fatalf("index = %d, want 3", index)
			}
			body, _ := v.LookupJSON("web", tt.q)
			var decoded lookupBody
			if err := json.Unmarshal(body, &decoded); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(decoded.Instances), tt.want) || decoded.Service != "web" || decoded.Index != 3 {
				t.Fatalf("JSON answer %s, want ids %v", body, tt.want)
			}
		})
	}
}

func TestParseStatusFilter(t *testing.T) {
	for _, ok := range []string{"", "passing", "any"} {
		if _, err := ParseStatusFilter(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"critical", "warning", "ANY", "x"} {
		if _, err := ParseStatusFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExpiredInstanceIsNeverReturned(t *testing.T) {
	v, clock := newView(t)
	v.Apply(registered(inst("web", "short", 10*time.Second, registry.StatusPassing, nil, nil), 1))
	v.Apply(registered(inst("web", "long", time.Minute, registry.StatusPassing, nil, nil), 2))

	body, _ := v.LookupJSON("web", Query{}) // cache the answer with both
	if want := 2; countInstances(t, body) != want {
		t.Fatalf("before expiry: %s", body)
	}

	clock.Advance(10 * time.Second) // exactly at the deadline: dead
	if got, _ := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"long"}) {
		t.Fatalf("Lookup at the deadline = %v", ids(got))
	}
	if body, _ := v.LookupJSON("web", Query{}); countInstances(t, body) != 1 {
		t.Fatalf("cached answer served an expired instance: %s", body)
	}
	if _, ok := v.Instance("web", "short"); ok {
		t.Fatal("Instance returned an expired instance")
	}
	entries, _ := v.Catalog()
	if len(entries) != 1 || entries[0].Instances != 1 {
		t.Fatalf("catalogue counts an expired instance: %+v", entries)
	}
	clock.Advance(time.Minute)
	entries, _ = v.Catalog()
	if len(entries) != 0 {
		t.Fatalf("a service without live instances is listed: %+v", entries)
	}
	if c, _ := v.Health("web"); c.Instances != 0 {
		t.Fatalf("health counts expired instances: %+v", c)
	}
}

func countInstances(t *testing.T, body []byte) int {
	t.Helper()
	var decoded lookupBody
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return len(decoded.Instances)
}

func TestCacheIsReusedUntilTheServiceChanges(t *testing.T) {
	v, clock := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, []string{"x"}, nil)
	v.Apply(registered(a, 1))
	v.Apply(registered(inst("db", "d", time.Minute, registry.StatusPassing, nil, nil), 1))

	step := func(wantHits, wantMisses uint64) {
		t.Helper()
		s := v.Stats()
		if s.Hits != wantHits || s.Misses != wantMisses {
			t.Fatalf("hits/misses = %d/%d, want %d/%d", s.Hits, s.Misses, wantHits, wantMisses)
		}
	}
	first, _ := v.LookupJSON("web", Query{})
	step(0, 1)
	second, _ := v.LookupJSON("web", Query{})
	step(1, 1)
	if &first[0] != &second[0] {
		t.Fatal("an unchanged service was encoded again")
	}
	v.LookupJSON("web", Query{Tags: []string{"x"}}) // another query: its own entry
	step(1, 2)

	// A change to another service leaves this one's cache alone.
	v.Apply(registered(inst("db", "e", time.Minute, registry.StatusPassing, nil, nil), 2))
	v.LookupJSON("web", Query{})
	step(2, 2)

	// A heartbeat changes expires_at, so the answer is encoded again.
	clock.Advance(time.Second)
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: a.Renewed(clock.Now(), ""), Index: 1})
	body, _ := v.LookupJSON("web", Query{})
	step(2, 3)
	var decoded lookupBody
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatal(err)
	}
	if !decoded.Instances[0].ExpiresAt.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("stale expires_at after heartbeat: %s", body)
	}

	v.CatalogJSON()
	v.CatalogJSON()
	step(3, 4)
	// A heartbeat changes no count of the catalogue: its cache survives.
	clock.Advance(time.Second)
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: a.Renewed(clock.Now(), ""), Index: 1})
	v.CatalogJSON()
	step(4, 4)
	// Once the earliest deadline it was encoded with passes (db's, at one
	// minute), it is encoded again.
	clock.Advance(59 * time.Second)
	body, _ = v.CatalogJSON()
	step(4, 5)
	var catalog catalogBody
	if err := json.Unmarshal(body, &catalog); err != nil {
		t.Fatal(err)
	}
	if want := []CatalogEntry{{Name: "web", Instances: 1, Passing: 1}}; !slices.Equal(catalog.Services, want) {
		t.Fatalf("catalogue after db's deadlines passed: %s", body)
	}
}

func TestCatalogueIndexIsTheSumOfServiceIndexes(t *testing.T) {
	v, _ := newView(t)
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{"web": {Index: 4}, "db": {Index: 1}}})
	v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, nil, nil), 5))
	v.Apply(registered(inst("db", "d", time.Minute, registry.StatusCritical, nil, nil), 2))
	entries, index := v.Catalog()
	if index != 7 {
		t.Fatalf("catalogue index = %d, want 7", index)
	}
	want := []CatalogEntry{{Name: "db", Instances: 1, Passing: 0}, {Name: "web", Instances: 1, Passing: 1}}
	if !slices.Equal(entries, want) {
		t.Fatalf("catalogue = %+v, want %+v", entries, want)
	}
	body, bodyIndex := v.CatalogJSON()
	var decoded catalogBody
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatal(err)
	}
	if bodyIndex != 7 || decoded.Index != 7 || !slices.Equal(decoded.Services, want) {
		t.Fatalf("catalogue JSON = %s", body)
	}
}

func TestWaitServiceWakesOnlyItsOwnWatchers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, _ := newView(t)
		v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, nil, nil), 1))
		v.Apply(registered(inst("db", "d", time.Minute, registry.StatusPassing, nil, nil), 1))

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		webWoke, dbWoke, catalogWoke := make(chan uint64, 1), make(chan uint64, 1), make(chan uint64, 1)
		go func() { webWoke <- v.WaitService(ctx, "web", 1) }()
		go func() { dbWoke <- v.WaitService(ctx, "db", 1) }()
		go func() { catalogWoke <- v.WaitCatalog(ctx, 2) }()
		synctest.Wait()

		v.Apply(registered(inst("web", "b", time.Minute, registry.StatusPassing, nil, nil), 2))
		synctest.Wait()
		select {
		case got := <-webWoke:
			if got != 2 {
				t.Fatalf("web woke with index %d, want 2", got)
			}
		default:
			t.Fatal("web watcher did not wake")
		}
		select {
		case got := <-catalogWoke:
			if got != 3 {
				t.Fatalf("catalogue woke with index %d, want 3", got)
			}
		default:
			t.Fatal("catalogue watcher did not wake")
		}
		select {
		case <-dbWoke:
			t.Fatal("db watcher woke on a change to web")
		default:
		}

		// A heartbeat wakes nobody.
		v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "db", Instance: inst("db", "d", 2*time.Minute, registry.StatusPassing, nil, nil), Index: 1})
		synctest.Wait()
		select {
		case <-dbWoke:
			t.Fatal("db watcher woke on a heartbeat")
		default:
		}
		cancel()
		if got := <-dbWoke; got != 1 {
			t.Fatalf("cancelled wait returned %d, want 1", got)
		}
	})
}

func TestWaitAnswersAtOnceWhenTheIndexDiffers(t *testing.T) {
	v, _ := newView(t)
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{"web": {Index: 3}}})
	v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, nil, nil), 4))
	ctx := t.Context() // never ends: a wait that blocked would hang the test
	if got := v.WaitService(ctx, "web", 2); got != 4 {
		t.Fatalf("older index: %d", got)
	}
	if got := v.WaitService(ctx, "web", 99); got != 4 {
		t.Fatalf("index ahead of the store (a reset store): %d", got)
	}
	if got := v.WaitCatalog(ctx, 99); got != 4 {
		t.Fatalf("catalogue: %d", got)
	}
}

func TestWaitTimesOutWithTheSameIndexAndForgetsTheWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, _ := newView(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		began := time.Now()
		if got := v.WaitService(ctx, "unknown", 0); got != 0 {
			t.Fatalf("index = %d", got)
		}
		if waited := time.Since(began); waited != 30*time.Second {
			t.Fatalf("waited %v, want the full 30s", waited)
		}
		v.mu.RLock()
		defer v.mu.RUnlock()
		if len(v.watchers) != 0 {
			t.Fatalf("%d watches left behind", len(v.watchers))
		}
	})
}

func TestWaitOnAnUnknownServiceWakesWhenItAppears(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, _ := newView(t)
		woke := make(chan uint64, 1)
		go func() { woke <- v.WaitService(t.Context(), "new", 0) }()
		synctest.Wait()
		v.Apply(registered(inst("new", "a", time.Minute, registry.StatusPassing, nil, nil), 1))
		if got := <-woke; got != 1 {
			t.Fatalf("woke with %d", got)
		}
	})
}

func TestLoadReplacesWakesAndTellsSubscribers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, clock := newView(t)
		gone := inst("web", "gone", time.Minute, registry.StatusPassing, nil, nil)
		lapsed := inst("web", "lapsed", 5*time.Second, registry.StatusPassing, nil, nil)
		kept := inst("web", "kept", time.Minute, registry.StatusPassing, nil, nil)
		v.Apply(registered(gone, 1))
		v.Apply(registered(lapsed, 2))
		v.Apply(registered(kept, 3))
		v.Apply(registered(inst("db", "d", time.Minute, registry.StatusPassing, nil, nil), 1))

		sub := v.Subscribe(nil)
		defer sub.Close()
		dbWoke, webWoke := make(chan uint64, 1), make(chan uint64, 1)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { webWoke <- v.WaitService(ctx, "web", 3) }()
		go func() { dbWoke <- v.WaitService(ctx, "db", 1) }()
		synctest.Wait()

		clock.Advance(10 * time.Second)
		changed := kept
		changed.Status = registry.StatusWarning
		fresh := inst("web", "fresh", time.Minute, registry.StatusPassing, nil, nil)
		v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
			"web": {Index: 7, Instances: []registry.Instance{changed, fresh}},
			"db":  {Index: 1, Instances: []registry.Instance{inst("db", "d", time.Minute, registry.StatusPassing, nil, nil).Renewed(start.Add(5*time.Second), "")}},
		}})
		synctest.Wait()

		if got := <-webWoke; got != 7 {
			t.Fatalf("web woke with %d", got)
		}
		select {
		case <-dbWoke:
			t.Fatal("db watcher woke though its index did not change")
		default:
		}
		var got []string
		for range 4 {
			ev := <-sub.Events()
			if ev.Index != 7 {
				t.Errorf("event %s/%s index %d, want 7", ev.Type, ev.Instance.ID, ev.Index)
			}
			got = append(got, fmt.Sprintf("%s %s", ev.Type, ev.Instance.ID))
		}
		want := []string{"deregistered gone", "expired lapsed", "registered fresh", "updated kept"}
		if !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		s := v.Stats()
		if !s.LastRefresh.Equal(clock.Now()) || s.Size != 3 {
			t.Fatalf("stats after load: %+v", s)
		}
		if v.CatalogIndex() != 8 {
			t.Fatalf("catalogue index %d, want 8", v.CatalogIndex())
		}
	})
}

func TestSubscriptionFiltersServicesAndHidesInternalEvents(t *testing.T) {
	v, _ := newView(t)
	sub := v.Subscribe([]string{"web"})
	defer sub.Close()
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(inst("db", "d", time.Minute, registry.StatusPassing, nil, nil), 1))
	v.Apply(registered(a, 1))
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "web", Instance: a.Renewed(start.Add(time.Second), ""), Index: 1})
	v.Apply(registry.Event{Type: registry.EventExpired, Service: "web", Instance: a, Index: 2})

	for _, want := range []registry.EventType{registry.EventRegistered, registry.EventExpired} {
		ev := <-sub.Events()
		if ev.Type != want || ev.Service != "web" {
			t.Fatalf("got %s %s, want %s web", ev.Type, ev.Service, want)
		}
	}
	select {
	case ev := <-sub.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
	if v.Stats().Expirations != 1 {
		t.Fatal("expiration not counted")
	}
}

func TestSlowSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	v, _ := newView(t)
	slow := v.Subscribe(nil)
	for i := range SubscriptionBuffer + 1 { // one more than fits: must not block
		v.Apply(registered(inst("web", fmt.Sprint(i), time.Minute, registry.StatusPassing, nil, nil), uint64(i+1)))
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("a subscriber with a full buffer was not dropped")
	}
	if !slow.Dropped() {
		t.Fatal("Dropped() = false")
	}
	slow.Close() // closing a dropped subscription is harmless
	if len(slow.Events()) != SubscriptionBuffer {
		t.Fatalf("buffered %d events", len(slow.Events()))
	}
}

func TestReloadingAnUnchangedServiceKeepsItsCacheAndTakesLaterDeadlines(t *testing.T) {
	v, _ := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	b := inst("db", "b", time.Minute, registry.StatusPassing, nil, nil)
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
		"web": {Index: 3, Instances: []registry.Instance{a}},
		"db":  {Index: 1, Instances: []registry.Instance{b}},
	}})
	v.LookupJSON("web", Query{})
	v.LookupJSON("db", Query{})
	sub := v.Subscribe(nil)
	defer sub.Close()

	// Another node renewed db/b; nothing else changed.
	renewed := b.Renewed(start.Add(30*time.Second), "")
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
		"web": {Index: 3, Instances: []registry.Instance{a}},
		"db":  {Index: 1, Instances: []registry.Instance{renewed}},
	}})
	v.LookupJSON("web", Query{})
	if s := v.Stats(); s.Hits != 1 || s.Misses != 2 {
		t.Fatalf("hits/misses %d/%d: an unchanged service lost its cache", s.Hits, s.Misses)
	}
	if got, _ := v.Instance("db", "b"); !got.ExpiresAt.Equal(renewed.ExpiresAt) {
		t.Fatalf("deadline %v, want %v", got.ExpiresAt, renewed.ExpiresAt)
	}
	v.LookupJSON("db", Query{})
	if s := v.Stats(); s.Misses != 3 {
		t.Fatal("a moved deadline did not invalidate the cached answer")
	}
	// An older deadline in a reload never moves one back.
	v.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{
		"web": {Index: 3, Instances: []registry.Instance{a}},
		"db":  {Index: 1, Instances: []registry.Instance{b}},
	}})
	if got, _ := v.Instance("db", "b"); !got.ExpiresAt.Equal(renewed.ExpiresAt) {
		t.Fatal("a reload moved a deadline earlier")
	}
	select {
	case ev := <-sub.Events():
		t.Fatalf("a reload without changes published %+v", ev)
	default:
	}
}

func TestASnapshotOlderThanARecentWriteDoesNotUndoIt(t *testing.T) {
	v, clock := newView(t)
	a := inst("web", "a", time.Hour, registry.StatusPassing, nil, nil)
	b := inst("web", "b", time.Hour, registry.StatusPassing, nil, nil)
	v.Apply(registered(a, 1))
	stale := registry.Snapshot{Services: map[string]registry.ServiceSnapshot{"web": {Index: 1, Instances: []registry.Instance{a}}}}
	v.Apply(registered(b, 2)) // written after the snapshot was read
	v.Apply(registered(inst("db", "d", time.Hour, registry.StatusPassing, nil, nil), 1))
	sub := v.Subscribe(nil)
	defer sub.Close()

	v.Load(stale)
	if got, index := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a", "b"}) || index != 2 {
		t.Fatalf("a stale snapshot undid a write: %v at %d", ids(got), index)
	}
	if _, ok := v.Instance("db", "d"); !ok {
		t.Fatal("a stale snapshot removed a service written after it")
	}
	if v.CatalogIndex() != 3 {
		t.Fatalf("catalogue index %d, want 3", v.CatalogIndex())
	}
	select {
	case ev := <-sub.Events():
		t.Fatalf("a stale snapshot published %+v", ev)
	default:
	}

	// Long after the last write, a lower index means the store was reset.
	clock.Advance(staleSnapshotWindow)
	v.Load(stale)
	if got, index := v.Lookup("web", Query{}); !slices.Equal(ids(got), []string{"a"}) || index != 1 {
		t.Fatalf("a reset store was not taken: %v at %d", ids(got), index)
	}
	if _, ok := v.Instance("db", "d"); ok {
		t.Fatal("a service missing from a reset store was kept")
	}
}
