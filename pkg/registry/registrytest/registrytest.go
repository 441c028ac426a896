// Package registrytest is the conformance suite that every registry.Store
// passes. A store's own tests call Run with a factory for fresh, empty stores:
//
//	func TestConformance(t *testing.T) {
//		registrytest.Run(t, func(t *testing.T) registry.Store {
//			s, err := embedded.Open(t.TempDir(), slog.New(slog.DiscardHandler))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite tests the Store contract only. It never sleeps: every time is
// passed in explicitly. Times are whole milliseconds, so a store must keep
// at least millisecond precision; they are compared with time.Time.Equal.
package registrytest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// T0 is the time the suite starts its clock at: whole milliseconds, UTC.
var T0 = time.Date(2031, time.March, 4, 5, 6, 7, 890_000_000, time.UTC)

// feedTimeout bounds the wait for an event on Changes. It is not a speed
// goal: it only keeps a broken store from hanging the suite.
const feedTimeout = 10 * time.Second

// Run runs the conformance suite. newStore returns a fresh, empty store for
// each subtest and registers its own cleanup (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) registry.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s registry.Store)
	}{
		{"RegisterNew", testRegisterNew},
		{"RegisterReplace", testRegisterReplace},
		{"RegisterAfterExpiry", testRegisterAfterExpiry},
		{"Heartbeat", testHeartbeat},
		{"HeartbeatStatus", testHeartbeatStatus},
		{"HeartbeatNotFound", testHeartbeatNotFound},
		{"Deregister", testDeregister},
		{"ExpireDue", testExpireDue},
		{"ExpireDueNewEarlierDeadline", testExpireDueNewEarlierDeadline},
		{"IndexSurvivesEmptyService", testIndexSurvivesEmptyService},
		{"GrantGrace", testGrantGrace},
		{"SnapshotRoundTrip", testSnapshotRoundTrip},
		{"Changes", testChanges},
		{"ConcurrentRegisters", testConcurrentRegisters},
		{"NameCharacters", testNameCharacters},
		{"ServicesIsolated", testServicesIsolated},
		{"Ping", testPing},
		{"Checks", testChecks},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, newStore(t)) })
	}
}

// Instance returns a valid instance of service registered at now, with a
// few tags and metadata keys, for tests of stores.
func Instance(service, id string, ttlSeconds int, now time.Time) registry.Instance {
	return registry.NewInstance(service, registry.Registration{
		ID:         id,
		Address:    "10.0.0.7",
		Port:       8080,
		Tags:       []string{"blue", "v2"},
		Metadata:   map[string]string{"zone": "eu-west-1a", "version": "2.4.1"},
		TTLSeconds: ttlSeconds,
	}, now, time.Minute)
}

func testRegisterNew(t *testing.T, s registry.Store) {
	in := Instance("web", "a", 30, T0)
	ev := mustRegister(t, s, in)
	wantEvent(t, ev, registry.EventRegistered, "web", "a", 1)
	wantInstance(t, ev.Instance, in)

	ev = mustRegister(t, s, Instance("web", "b", 30, T0))
	wantEvent(t, ev, registry.EventRegistered, "web", "b", 2)
}

func testRegisterReplace(t *testing.T, s registry.Store) {
	first := mustRegister(t, s, Instance("web", "a", 30, T0))
	in := Instance("web", "a", 45, T0.Add(time.Second))
	in.Address, in.Port = "db-1.example.com", 9090
	ev := mustRegister(t, s, in)
	wantEvent(t, ev, registry.EventUpdated, "web", "a", 0)
	if ev.Index <= first.Index {
		t.Errorf("replace: index %d, want above %d", ev.Index, first.Index)
	}
	wantInstance(t, ev.Instance, in)

	svc := mustService(t, s, "web")
	if len(svc.Instances) != 1 {
		t.Fatalf("after replace: %d instances, want 1", len(svc.Instances))
	}
	wantInstance(t, svc.Instances[0], in)
	if svc.Index != ev.Index {
		t.Errorf("snapshot index %d, want %d", svc.Index, ev.Index)
	}
}

// A register whose predecessor's deadline has passed (even if not yet
// reaped) is a new registration, not a replacement.
func testRegisterAfterExpiry(t *testing.T, s registry.Store) {
	first := mustRegister(t, s, Instance("web", "a", 5, T0))
	ev := mustRegister(t, s, Instance("web", "a", 5, T0.Add(5*time.Second)))
	wantEvent(t, ev, registry.EventRegistered, "web", "a", 0)
	if ev.Index <= first.Index {
		t.Errorf("index %d, want above %d", ev.Index, first.Index)
	}
}

func testHeartbeat(t *testing.T, s registry.Store) {
	in := Instance("web", "a", 10, T0)
	reg := mustRegister(t, s, in)

	now := T0.Add(4 * time.Second)
	ev, err := s.Heartbeat(t.Context(), "web", "a", "", now)
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	wantEvent(t, ev, registry.EventHeartbeat, "web", "a", reg.Index)
	want := in
	want.LastHeartbeat, want.ExpiresAt = now, now.Add(10*time.Second)
	wantInstance(t, ev.Instance, want)

	// A heartbeat just before the deadline still renews it.
	now = want.ExpiresAt.Add(-time.Millisecond)
	ev, err = s.Heartbeat(t.Context(), "web", "a", "", now)
	if err != nil {
		t.Fatalf("Heartbeat 1 ms before the deadline: %v", err)
	}
	want.LastHeartbeat, want.ExpiresAt = now, now.Add(10*time.Second)
	wantInstance(t, ev.Instance, want)
	if ev.Index != reg.Index {
		t.Errorf("heartbeat moved the index from %d to %d", reg.Index, ev.Index)
	}

	svc := mustService(t, s, "web")
	if len(svc.Instances) != 1 {
		t.Fatalf("snapshot: %d instances, want 1", len(svc.Instances))
	}
	wantInstance(t, svc.Instances[0], want)
	if svc.Index != reg.Index {
		t.Errorf("snapshot index %d, want %d (heartbeats change no index)", svc.Index, reg.Index)
	}
}

func testHeartbeatStatus(t *testing.T, s registry.Store) {
	reg := mustRegister(t, s, Instance("web", "a", 10, T0))

	now := T0.Add(time.Second)
	ev, err := s.Heartbeat(t.Context(), "web", "a", registry.StatusWarning, now)
	if err != nil {
		t.Fatalf("Heartbeat(warning): %v", err)
	}
	wantEvent(t, ev, registry.EventUpdated, "web", "a", 0)
	if ev.Index <= reg.Index {
		t.Errorf("status change: index %d, want above %d", ev.Index, reg.Index)
	}
	if ev.Instance.Status != registry.StatusWarning {
		t.Errorf("status %q, want warning", ev.Instance.Status)
	}
	if want := now.Add(10 * time.Second); !ev.Instance.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v", ev.Instance.ExpiresAt, want)
	}
	changed := ev.Index

	// The same status again, or none, is a plain heartbeat.
	for _, status := range []registry.Status{registry.StatusWarning, ""} {
		ev, err = s.Heartbeat(t.Context(), "web", "a", status, now.Add(time.Second))
		if err != nil {
			t.Fatalf("Heartbeat(%q): %v", status, err)
		}
		wantEvent(t, ev, registry.EventHeartbeat, "web", "a", changed)
		if ev.Instance.Status != registry.StatusWarning {
			t.Errorf("Heartbeat(%q): status %q, want warning kept", status, ev.Instance.Status)
		}
	}

	svc := mustService(t, s, "web")
	if svc.Index != changed || len(svc.Instances) != 1 || svc.Instances[0].Status != registry.StatusWarning {
		t.Errorf("snapshot: index %d, instances %+v; want index %d and one warning instance", svc.Index, svc.Instances, changed)
	}
}

func testHeartbeatNotFound(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "a", 10, T0))
	deadline := T0.Add(10 * time.Second)

	tests := []struct {
		name, service, id string
		now               time.Time
	}{
		{"unknown id", "web", "b", T0},
		{"unknown service", "api", "a", T0},
		{"at the deadline", "web", "a", deadline},
		{"after the deadline", "web", "a", deadline.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Heartbeat(t.Context(), tt.service, tt.id, registry.StatusWarning, tt.now)
			if !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("Heartbeat(%s/%s at %v) = %v, want ErrNotFound", tt.service, tt.id, tt.now, err)
			}
		})
	}
	// None of those failures changed anything.
	svc := mustService(t, s, "web")
	if svc.Index != 1 || len(svc.Instances) != 1 || svc.Instances[0].Status != registry.StatusPassing {
		t.Errorf("after failed heartbeats: index %d, instances %+v; want index 1, one passing instance", svc.Index, svc.Instances)
	}
}

func testDeregister(t *testing.T, s registry.Store) {
	reg := mustRegister(t, s, Instance("web", "a", 10, T0))
	mustRegister(t, s, Instance("web", "b", 10, T0))

	ev, err := s.Deregister(t.Context(), "web", "a")
	if err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	wantEvent(t, ev, registry.EventDeregistered, "web", "a", 0)
	if ev.Index <= reg.Index+1 {
		t.Errorf("index %d, want above %d", ev.Index, reg.Index+1)
	}
	if _, err := s.Deregister(t.Context(), "web", "a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Deregister = %v, want ErrNotFound", err)
	}
	if _, err := s.Deregister(t.Context(), "nosuch", "a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Deregister of an unknown service = %v, want ErrNotFound", err)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", T0); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Heartbeat after Deregister = %v, want ErrNotFound", err)
	}
	svc := mustService(t, s, "web")
	if got := ids(svc.Instances); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after Deregister: instances %v, want [b]", got)
	}
	if svc.Index != ev.Index {
		t.Errorf("snapshot index %d, want %d", svc.Index, ev.Index)
	}
}

func testExpireDue(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "a", 5, T0))
	mustRegister(t, s, Instance("web", "b", 10, T0))
	mustRegister(t, s, Instance("web", "c", 20, T0))
	mustRegister(t, s, Instance("api", "d", 5, T0))
	before := mustSnapshot(t, s)

	events, err := s.ExpireDue(t.Context(), T0.Add(5*time.Second-time.Millisecond))
	if err != nil || len(events) != 0 {
		t.Fatalf("ExpireDue before any deadline = %v, %v; want none", events, err)
	}

	// b's deadline is exactly now: an instance is dead from its deadline on.
	now := T0.Add(10 * time.Second)
	events, err = s.ExpireDue(t.Context(), now)
	if err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	got := map[string]registry.Event{}
	for _, ev := range events {
		if ev.Type != registry.EventExpired {
			t.Errorf("event %+v, want type expired", ev)
		}
		key := ev.Service + "/" + ev.Instance.ID
		if _, dup := got[key]; dup {
			t.Errorf("%s expired twice", key)
		}
		got[key] = ev
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"api/d", "web/a", "web/b"}) {
		t.Fatalf("expired %v, want [api/d web/a web/b]", keys)
	}
	if a, b := got["web/a"].Index, got["web/b"].Index; a == b || min(a, b) <= before.Services["web"].Index {
		t.Errorf("web expiry indexes %d and %d, want distinct and above %d", a, b, before.Services["web"].Index)
	}
	if got["api/d"].Index <= before.Services["api"].Index {
		t.Errorf("api expiry index %d, want above %d", got["api/d"].Index, before.Services["api"].Index)
	}

	if again, err := s.ExpireDue(t.Context(), now); err != nil || len(again) != 0 {
		t.Errorf("second ExpireDue = %v, %v; want none", again, err)
	}

	after := mustSnapshot(t, s)
	if ids := ids(after.Services["web"].Instances); !slices.Equal(ids, []string{"c"}) {
		t.Errorf("web after expiry: %v, want [c]", ids)
	}
	if idx := after.Services["web"].Index; idx != max(got["web/a"].Index, got["web/b"].Index) {
		t.Errorf("web index %d, want the last expiry's %d", idx, max(got["web/a"].Index, got["web/b"].Index))
	}
	api, ok := after.Services["api"]
	if !ok || len(api.Instances) != 0 || api.Index != got["api/d"].Index {
		t.Errorf("api after expiry: %+v (present %v), want no instances and index %d", api, ok, got["api/d"].Index)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", T0); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Heartbeat of an expired instance = %v, want ErrNotFound", err)
	}
}

// An instance registered after an ExpireDue call, with an earlier deadline
// than any the store held then, is still expired on time (stores that
// remember when their next expiry is due must not miss it).
func testExpireDueNewEarlierDeadline(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "long", 3600, T0))
	if events, err := s.ExpireDue(t.Context(), T0.Add(time.Second)); err != nil || len(events) != 0 {
		t.Fatalf("ExpireDue = %v, %v; want none", events, err)
	}
	mustRegister(t, s, Instance("web", "short", 1, T0.Add(2*time.Second)))
	events, err := s.ExpireDue(t.Context(), T0.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Instance.ID != "short" {
		t.Errorf("ExpireDue = %v, want short's expiry", events)
	}
}

func testIndexSurvivesEmptyService(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "a", 10, T0))
	dereg, err := s.Deregister(t.Context(), "web", "a")
	if err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	svc, ok := mustSnapshot(t, s).Services["web"]
	if !ok {
		t.Fatal("snapshot lost the service when its last instance left")
	}
	if svc.Index != dereg.Index || len(svc.Instances) != 0 {
		t.Errorf("empty service: index %d, %d instances; want index %d, none", svc.Index, len(svc.Instances), dereg.Index)
	}
	ev := mustRegister(t, s, Instance("web", "a", 10, T0))
	if ev.Index <= dereg.Index {
		t.Errorf("register after the service emptied: index %d, want above %d", ev.Index, dereg.Index)
	}
}

func testGrantGrace(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "short", 10, T0)) // deadline T0+10s: past at grace time
	mustRegister(t, s, Instance("web", "near", 30, T0))  // deadline T0+30s: due soon at grace time
	mustRegister(t, s, Instance("api", "other", 60, T0)) // another service gets grace too
	// A deadline already later than grace would give it (T0+110s against
	// T0+20s+60s): a heartbeat stamped later than the grace call, as when
	// another process's clock runs ahead.
	mustRegister(t, s, Instance("web", "far", 60, T0))
	if _, err := s.Heartbeat(t.Context(), "web", "far", "", T0.Add(50*time.Second)); err != nil {
		t.Fatal(err)
	}
	before := mustSnapshot(t, s)

	now := T0.Add(20 * time.Second)
	if err := s.GrantGrace(t.Context(), now); err != nil {
		t.Fatalf("GrantGrace: %v", err)
	}
	want := map[string]time.Time{
		"web/short": now.Add(10 * time.Second),
		"web/near":  now.Add(30 * time.Second),
		"web/far":   T0.Add(110 * time.Second),
		"api/other": now.Add(60 * time.Second),
	}
	after := mustSnapshot(t, s)
	for name, svc := range after.Services {
		if svc.Index != before.Services[name].Index {
			t.Errorf("GrantGrace moved %s's index from %d to %d", name, before.Services[name].Index, svc.Index)
		}
		for _, in := range svc.Instances {
			key := name + "/" + in.ID
			if !in.ExpiresAt.Equal(want[key]) {
				t.Errorf("%s expires at %v, want %v", key, in.ExpiresAt, want[key])
			}
			delete(want, key)
		}
	}
	if len(want) != 0 {
		t.Errorf("missing after GrantGrace: %v", slices.Sorted(maps.Keys(want)))
	}

	// The grace holds: nothing is due before the earliest new deadline, and
	// an instance that was past its deadline can heartbeat again.
	if events, err := s.ExpireDue(t.Context(), now.Add(10*time.Second-time.Millisecond)); err != nil || len(events) != 0 {
		t.Errorf("ExpireDue within the grace = %v, %v; want none", events, err)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "short", "", now.Add(time.Second)); err != nil {
		t.Errorf("Heartbeat within the grace: %v", err)
	}
}

func testSnapshotRoundTrip(t *testing.T, s registry.Store) {
	full := registry.NewInstance("web", registry.Registration{
		ID:       "full",
		Address:  "2001:db8::1",
		Port:     65535,
		Tags:     []string{"z-last", "a first", "ünïcödé", "dup", "dup"},
		Metadata: map[string]string{"k": "v", "empty": "", "json": `{"a":[1,2]}`, "ünï": "cödé"},
		// A TTL that is not a whole minute and times with milliseconds.
		TTLSeconds: 86400,
	}, T0.Add(123*time.Millisecond), time.Minute)
	bare := registry.NewInstance("web", registry.Registration{ID: "bare", Address: "host.example", Port: 1}, T0, 17*time.Second)
	for _, in := range []registry.Instance{full, bare} {
		mustRegister(t, s, in)
	}
	// A status and a renewed deadline must round-trip too.
	hb, err := s.Heartbeat(t.Context(), "web", "full", registry.StatusCritical, T0.Add(2*time.Second+7*time.Millisecond))
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	full = full.Renewed(T0.Add(2*time.Second+7*time.Millisecond), registry.StatusCritical)
	wantInstance(t, hb.Instance, full)

	svc := mustService(t, s, "web")
	if len(svc.Instances) != 2 {
		t.Fatalf("snapshot: %d instances, want 2", len(svc.Instances))
	}
	for _, in := range svc.Instances {
		switch in.ID {
		case "full":
			wantInstance(t, in, full)
		case "bare":
			wantInstance(t, in, bare)
		default:
			t.Errorf("unexpected instance %q", in.ID)
		}
	}
}

func testChanges(t *testing.T, s registry.Store) {
	var want []registry.Event
	record := func(ev registry.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev)
	}
	record(s.Register(t.Context(), Instance("web", "a", 10, T0)))
	record(s.Register(t.Context(), Instance("web", "b", 10, T0)))
	record(s.Register(t.Context(), Instance("api", "c", 10, T0)))
	record(s.Heartbeat(t.Context(), "web", "a", "", T0.Add(time.Second)))
	record(s.Heartbeat(t.Context(), "web", "a", registry.StatusWarning, T0.Add(time.Second)))
	record(s.Register(t.Context(), Instance("web", "b", 20, T0.Add(time.Second))))
	record(s.Deregister(t.Context(), "api", "c"))
	expired, err := s.ExpireDue(t.Context(), T0.Add(11*time.Second))
	if err != nil || len(expired) != 1 {
		t.Fatalf("ExpireDue = %v, %v; want web/a", expired, err)
	}
	want = append(want, expired...)

	for i, w := range want {
		got := NextChange(t, s.Changes(), func(ev registry.Event) bool { return ev.Type != registry.EventResync })
		if got.Type != w.Type || got.Service != w.Service || got.Instance.ID != w.Instance.ID || got.Index != w.Index {
			t.Fatalf("change %d: %s, want %s", i, describe(got), describe(w))
		}
	}
}

func testConcurrentRegisters(t *testing.T, s registry.Store) {
	const writers, each = 32, 8
	indexes := registerConcurrently(t, writers, each, s)
	svc := mustService(t, s, "web")
	if len(svc.Instances) != writers*each {
		t.Errorf("%d instances landed, want %d", len(svc.Instances), writers*each)
	}
	if top := slices.Max(slices.Collect(maps.Keys(indexes))); svc.Index < top {
		t.Errorf("snapshot index %d is below the last event's %d", svc.Index, top)
	}
}

func testNameCharacters(t *testing.T, s registry.Store) {
	const service, id = "Payments.v2_internal-EU", "node-1.rack_7.A"
	in := Instance(service, id, 10, T0)
	ev := mustRegister(t, s, in)
	wantEvent(t, ev, registry.EventRegistered, service, id, 1)
	// Names that share a prefix stay apart.
	mustRegister(t, s, Instance("Payments.v2", "node-1", 10, T0))
	mustRegister(t, s, Instance(service, "node-1", 10, T0))

	if _, err := s.Heartbeat(t.Context(), service, id, "", T0.Add(time.Second)); err != nil {
		t.Errorf("Heartbeat: %v", err)
	}
	snap := mustSnapshot(t, s)
	if got := ids(snap.Services[service].Instances); !slices.Equal(got, []string{"node-1", id}) {
		t.Errorf("%s: instances %v, want [node-1 %s]", service, got, id)
	}
	if got := ids(snap.Services["Payments.v2"].Instances); !slices.Equal(got, []string{"node-1"}) {
		t.Errorf("Payments.v2: instances %v, want [node-1]", got)
	}
	if _, err := s.Deregister(t.Context(), service, id); err != nil {
		t.Errorf("Deregister: %v", err)
	}
}

func testServicesIsolated(t *testing.T, s registry.Store) {
	mustRegister(t, s, Instance("web", "a", 10, T0))
	api := mustRegister(t, s, Instance("api", "a", 10, T0))
	if api.Index != 1 {
		t.Errorf("first change to api: index %d, want 1 (indexes are per service)", api.Index)
	}
	mustRegister(t, s, Instance("web", "b", 10, T0))
	if _, err := s.Heartbeat(t.Context(), "web", "a", registry.StatusCritical, T0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deregister(t.Context(), "web", "b"); err != nil {
		t.Fatal(err)
	}
	snap := mustSnapshot(t, s)
	if got := snap.Services["api"]; got.Index != api.Index || len(got.Instances) != 1 {
		t.Errorf("api after changes to web: index %d, %d instances; want %d, 1", got.Index, len(got.Instances), api.Index)
	}
	if _, err := s.Deregister(t.Context(), "api", "b"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Deregister api/b (only web had b) = %v, want ErrNotFound", err)
	}
}

func testPing(t *testing.T, s registry.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping of a fresh store: %v", err)
	}
}

// NextChange returns the next event on changes that keep accepts, failing
// the test if none comes within a generous bound.
func NextChange(t testing.TB, changes <-chan registry.Event, keep func(registry.Event) bool) registry.Event {
	t.Helper()
	timeout := time.NewTimer(feedTimeout)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-changes:
			if !ok {
				t.Fatal("Changes was closed")
			}
			if keep(ev) {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no event on Changes within %v", feedTimeout)
		}
	}
}

func mustRegister(t *testing.T, s registry.Store, in registry.Instance) registry.Event {
	t.Helper()
	ev, err := s.Register(t.Context(), in)
	if err != nil {
		t.Fatalf("Register %s/%s: %v", in.Service, in.ID, err)
	}
	return ev
}

func mustSnapshot(t *testing.T, s registry.Store) registry.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return snap
}

// mustService returns one service from a snapshot, its instances sorted by id.
func mustService(t *testing.T, s registry.Store, name string) registry.ServiceSnapshot {
	t.Helper()
	svc, ok := mustSnapshot(t, s).Services[name]
	if !ok {
		t.Fatalf("snapshot has no service %q", name)
	}
	slices.SortFunc(svc.Instances, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return svc
}

// wantEvent checks an event; index 0 means "any index".
func wantEvent(t *testing.T, ev registry.Event, typ registry.EventType, service, id string, index uint64) {
	t.Helper()
	if ev.Type != typ || ev.Service != service || ev.Instance.ID != id || ev.Instance.Service != service || (index != 0 && ev.Index != index) {
		want := registry.Event{Type: typ, Service: service, Instance: registry.Instance{ID: id}, Index: index}
		t.Errorf("event %s, want %s", describe(ev), describe(want))
	}
}

// wantInstance compares every field; times with Equal, empty and nil tags
// and metadata alike.
func wantInstance(t *testing.T, got, want registry.Instance) {
	t.Helper()
	got, want = got.Clone(), want.Clone()
	times := []struct {
		field     string
		got, want time.Time
	}{
		{"registered_at", got.RegisteredAt, want.RegisteredAt},
		{"last_heartbeat", got.LastHeartbeat, want.LastHeartbeat},
		{"expires_at", got.ExpiresAt, want.ExpiresAt},
	}
	for _, tm := range times {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s/%s %s: %v, want %v", want.Service, want.ID, tm.field, tm.got, tm.want)
		}
	}
	got.RegisteredAt, got.LastHeartbeat, got.ExpiresAt = time.Time{}, time.Time{}, time.Time{}
	want.RegisteredAt, want.LastHeartbeat, want.ExpiresAt = time.Time{}, time.Time{}, time.Time{}
	if !slices.Equal(got.Tags, want.Tags) || !maps.Equal(got.Metadata, want.Metadata) ||
		got.Service != want.Service || got.ID != want.ID || got.Address != want.Address ||
		got.Port != want.Port || got.TTLSeconds != want.TTLSeconds || got.Status != want.Status {
		t.Errorf("instance:\n got %+v\nwant %+v", got, want)
	}
}

// testChecks: check definitions are part of the registration; they come
// back from every read, survive heartbeats and status changes, and never
// hold a result.
func testChecks(t *testing.T, s registry.Store) {
	in := registry.NewInstance("db", registry.Registration{
		ID: "a", Address: "10.0.0.8", Port: 5432,
		Checks: []registry.Check{
			{HTTP: "/healthz", Interval: "5s", Timeout: "1s", Headers: map[string]string{"X-Probe": "saga"}, TLSSkipVerify: true},
			{TCP: ":5432", FailuresBeforeCritical: 2, DeregisterCriticalAfter: "1m"},
		},
	}, T0, time.Minute)
	want := registry.CheckDefinitions(in.Checks)
	in.Checks[0].Status, in.Checks[0].Output = registry.StatusPassing, "a result is not stored"
	same := func(what string, got []registry.Check) {
		t.Helper()
		if !registry.SameCheckDefinitions(got, want) {
			t.Errorf("%s: checks %+v, want %+v", what, got, want)
		}
		for i, c := range got {
			if c.Status != "" || c.Output != "" || c.LastChecked != nil {
				t.Errorf("%s: checks[%d] holds a result: %+v", what, i, c)
			}
		}
	}
	same("register", mustRegister(t, s, in).Instance.Checks)
	same("snapshot", mustService(t, s, "db").Instances[0].Checks)
	ev, err := s.Heartbeat(t.Context(), "db", "a", registry.StatusPassing, T0.Add(time.Second))
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	same("status change", ev.Instance.Checks)
	same("changes", NextChange(t, s.Changes(), func(ev registry.Event) bool { return ev.Type == registry.EventUpdated }).Instance.Checks)
	same("snapshot after heartbeat", mustService(t, s, "db").Instances[0].Checks)

	// A registration without checks drops them.
	ev = mustRegister(t, s, Instance("db", "a", 30, T0.Add(2*time.Second)))
	if len(ev.Instance.Checks) != 0 || len(mustService(t, s, "db").Instances[0].Checks) != 0 {
		t.Errorf("checks kept after a registration without any")
	}
}

func describe(ev registry.Event) string {
	return fmt.Sprintf("%s %s/%s index %d", ev.Type, ev.Service, ev.Instance.ID, ev.Index)
}

func ids(instances []registry.Instance) []string {
	out := make([]string, len(instances))
	for i, in := range instances {
		out[i] = in.ID
	}
	slices.Sort(out)
	return out
}

// RunShared runs the tests for a store that several Saga processes share
// (Redis): newPair returns two handles on one fresh, empty store, as two
// processes would open it, and registers their cleanup. A change made through
// either handle must be visible through the other at once in Snapshot, and
// arrive on the other's Changes; each due instance is expired exactly once.
func RunShared(t *testing.T, newPair func(t *testing.T) (a, b registry.Store)) {
	tests := []struct {
		name string
		test func(t *testing.T, a, b registry.Store)
	}{
		{"SeeEachOther", testSharedSeeEachOther},
		{"ChangesCrossOver", testSharedChanges},
		{"ExpireOnce", testSharedExpireOnce},
		{"ConcurrentRegisters", testSharedConcurrentRegisters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newPair(t)
			tt.test(t, a, b)
		})
	}
}

func testSharedSeeEachOther(t *testing.T, a, b registry.Store) {
	in := Instance("web", "x", 10, T0)
	reg := mustRegister(t, a, in)
	svc := mustService(t, b, "web")
	if svc.Index != reg.Index || len(svc.Instances) != 1 {
		t.Fatalf("b after a registered: index %d, %d instances; want %d, 1", svc.Index, len(svc.Instances), reg.Index)
	}
	wantInstance(t, svc.Instances[0], in)

	hb, err := b.Heartbeat(t.Context(), "web", "x", "", T0.Add(time.Second))
	if err != nil {
		t.Fatalf("heartbeat through b of a's registration: %v", err)
	}
	wantEvent(t, hb, registry.EventHeartbeat, "web", "x", reg.Index)
	if got := mustService(t, a, "web").Instances[0].ExpiresAt; !got.Equal(T0.Add(11 * time.Second)) {
		t.Errorf("a sees expires_at %v after b's heartbeat, want %v", got, T0.Add(11*time.Second))
	}

	upd, err := b.Heartbeat(t.Context(), "web", "x", registry.StatusWarning, T0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if svc := mustService(t, a, "web"); svc.Index != upd.Index || svc.Instances[0].Status != registry.StatusWarning {
		t.Errorf("a after b's status change: index %d, status %q; want %d, warning", svc.Index, svc.Instances[0].Status, upd.Index)
	}

	dereg, err := b.Deregister(t.Context(), "web", "x")
	if err != nil {
		t.Fatal(err)
	}
	if svc := mustService(t, a, "web"); svc.Index != dereg.Index || len(svc.Instances) != 0 {
		t.Errorf("a after b deregistered: index %d, %d instances; want %d, none", svc.Index, len(svc.Instances), dereg.Index)
	}
	if _, err := a.Deregister(t.Context(), "web", "x"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a deregistering what b removed = %v, want ErrNotFound", err)
	}
}

func testSharedChanges(t *testing.T, a, b registry.Store) {
	reg := mustRegister(t, a, Instance("web", "x", 10, T0))
	got := NextChange(t, b.Changes(), func(ev registry.Event) bool {
		return ev.Type == registry.EventRegistered && ev.Service == "web" && ev.Instance.ID == "x"
	})
	if got.Index != reg.Index {
		t.Errorf("b's feed: %s, want %s", describe(got), describe(reg))
	}
	dereg, err := b.Deregister(t.Context(), "web", "x")
	if err != nil {
		t.Fatal(err)
	}
	got = NextChange(t, a.Changes(), func(ev registry.Event) bool {
		return ev.Type == registry.EventDeregistered && ev.Service == "web" && ev.Instance.ID == "x"
	})
	if got.Index != dereg.Index {
		t.Errorf("a's feed: %s, want %s", describe(got), describe(dereg))
	}
}

func testSharedExpireOnce(t *testing.T, a, b registry.Store) {
	const n = 40
	for i := range n {
		mustRegister(t, a, Instance(fmt.Sprint("svc", i%4), fmt.Sprint("i", i), 5, T0))
	}
	now := T0.Add(5 * time.Second)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range []registry.Store{a, b, a, b} {
		wg.Go(func() {
			events, err := s.ExpireDue(t.Context(), now)
			if err != nil {
				t.Errorf("ExpireDue: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range events {
				seen[ev.Service+"/"+ev.Instance.ID]++
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d instances expired, want %d", len(seen), n)
	}
	for key, times := range seen {
		if times != 1 {
			t.Errorf("%s expired %d times, want once", key, times)
		}
	}
}

func testSharedConcurrentRegisters(t *testing.T, a, b registry.Store) {
	const writers, each = 16, 8
	registerConcurrently(t, writers, each, a, b)
	for _, s := range []registry.Store{a, b} {
		if n := len(mustService(t, s, "web").Instances); n != writers*each {
			t.Errorf("%d instances, want %d", n, writers*each)
		}
	}
}

// registerConcurrently has writers goroutines register each instances of
// "web", writer w through stores[w % len(stores)], and fails the test when
// two registrations get the same index. It returns every index with the id
// that got it.
func registerConcurrently(t *testing.T, writers, each int, stores ...registry.Store) map[uint64]string {
	t.Helper()
	var mu sync.Mutex
	indexes := map[uint64]string{}
	var wg sync.WaitGroup
	for w := range writers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				ev, err := s.Register(t.Context(), Instance("web", id, 60, T0))
				if err != nil {
					t.Errorf("Register %s: %v", id, err)
					return
				}
				mu.Lock()
				if other, dup := indexes[ev.Index]; dup {
					t.Errorf("%s and %s both got index %d", other, id, ev.Index)
				}
				indexes[ev.Index] = id
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return indexes
}
