package redisstore

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// announcing keeps the stores' memberships alive, as pkg/checks does
// (every second in a Saga, more often here), until the test ends.
func announcing(t *testing.T, stores map[string]*Store) {
	t.Helper()
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); wg.Wait() }) // before the stores close
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for self, s := range stores {
				_, _ = s.Announce(t.Context(), self, 3*time.Second)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
}

// pullingPair opens two stores on srv that announce themselves, and waits
// until both find that every member pulls.
func pullingPair(t *testing.T, srv *redistest.Server) (a, b *Store) {
	t.Helper()
	a, b = openInternal(t, srv.URL()), openInternal(t, srv.URL())
	announcing(t, map[string]*Store{"saga-a": a, "saga-b": b})
	asynctest.Eventually(t, 3*time.Second, "both stores find that every Saga pulls", func() error {
		if !a.quietHeartbeats() || !b.quietHeartbeats() {
			return fmt.Errorf("quiet: a %v, b %v", a.quietHeartbeats(), b.quietHeartbeats())
		}
		return nil
	})
	return a, b
}

// publishCalls is how many PUBLISH commands Redis has run.
func publishCalls(t *testing.T, c *goredis.Client) int {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_publish:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// delivery is an event and when it came.
type delivery struct {
	at time.Time
	ev registry.Event
}

// recordEvents keeps every event of s until the test ends.
func recordEvents(t *testing.T, s *Store) func() []delivery {
	var mu sync.Mutex
	var got []delivery
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); wg.Wait() })
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case ev := <-s.Changes():
				mu.Lock()
				got = append(got, delivery{time.Now(), ev})
				mu.Unlock()
			}
		}
	})
	return func() []delivery {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// heartbeatFor renews service/id through s every interval for d, and
// returns every deadline it set.
func heartbeatFor(t *testing.T, s *Store, service, id string, interval, d time.Duration) []time.Time {
	t.Helper()
	var deadlines []time.Time
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(interval) {
		ev, err := s.Heartbeat(t.Context(), service, id, "", time.Now())
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		deadlines = append(deadlines, ev.Instance.ExpiresAt)
	}
	return deadlines
}

// While every Saga pulls, heartbeats through one publish nothing, and the
// other learns each new deadline from Redis before the one it holds
// passes; the deadlines it delivers are ones Redis held.
func TestPeersPullDeadlines(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b := pullingPair(t, srv)
	events := recordEvents(t, b)
	reg, err := a.Register(t.Context(), registrytest.Instance("web", "x", 2, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, b, "web", "x", 0)
	before := publishCalls(t, srv.Client())

	renewed := heartbeatFor(t, a, "web", "x", 300*time.Millisecond, 6*time.Second)

	if n := publishCalls(t, srv.Client()) - before; n != 0 {
		t.Errorf("%d heartbeats through a published %d notices, want none", len(renewed), n)
	}
	held := reg.Instance.ExpiresAt // what b holds, from the registration
	beats := 0
	for _, d := range events() {
		if d.ev.Type != registry.EventHeartbeat || d.ev.Instance.ID != "x" {
			continue
		}
		beats++
		got := d.ev.Instance.ExpiresAt
		if !slices.ContainsFunc(renewed, got.Equal) {
			t.Errorf("b delivered deadline %s, which Redis never held", got.Format(time.StampMilli))
		}
		if !d.at.Before(held) {
			t.Errorf("b learned deadline %s at %s, after the one it held (%s) passed",
				got.Format(time.StampMilli), d.at.Format(time.StampMilli), held.Format(time.StampMilli))
		}
		held = got
		if d.ev.Instance.Address != reg.Instance.Address || d.ev.Instance.TTLSeconds != 2 {
			t.Errorf("b's heartbeat event lacks the record: %+v", d.ev.Instance)
		}
	}
	if beats == 0 || !held.After(time.Now()) {
		t.Errorf("b delivered %d heartbeats; it holds deadline %s, past at %s",
			beats, held.Format(time.StampMilli), time.Now().Format(time.StampMilli))
	}
	t.Logf("%d heartbeats through a, %d heartbeat events on b", len(renewed), beats)
}

// A member that does not advertise pulling (a Saga of a release before
// this one), or a listener that is no member, brings plain heartbeat
// notices back.
func TestPlainNoticesWhileASagaDoesNotPull(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		older func(t *testing.T, c *goredis.Client)
	}{
		{"member without the mark", func(t *testing.T, c *goredis.Client) {
			now, err := c.Time(t.Context()).Result()
			if err != nil {
				t.Fatal(err)
			}
			until := now.Add(time.Hour).UnixMilli()
			if err := c.ZAdd(t.Context(), membersKey, goredis.Z{Score: float64(until), Member: "older"}).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"listener without membership", func(t *testing.T, c *goredis.Client) {
			sub := c.Subscribe(t.Context(), changeChannel)
			t.Cleanup(func() { _ = sub.Close() })
			if _, err := sub.Receive(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			a, b := pullingPair(t, srv)
			tt.older(t, srv.Client())
			asynctest.Eventually(t, 3*time.Second, "a finds a Saga that does not pull", func() error {
				if a.quietHeartbeats() {
					return fmt.Errorf("still quiet")
				}
				return nil
			})
			if _, err := a.Register(t.Context(), registrytest.Instance("web", "x", 30, time.Now())); err != nil {
				t.Fatal(err)
			}
			waitForRecord(t, b, "web", "x", 0)
			before := publishCalls(t, srv.Client())
			renewed := heartbeatFor(t, a, "web", "x", 100*time.Millisecond, 1500*time.Millisecond)
			if n := publishCalls(t, srv.Client()) - before; n < 2 {
				t.Errorf("%d heartbeats over 1.5 s published %d notices, want one per 500 ms", len(renewed), n)
			}
			ev := nextEvent(t, b.Changes(), heartbeatOf("x"))
			if !slices.ContainsFunc(renewed, ev.Instance.ExpiresAt.Equal) {
				t.Errorf("b's heartbeat deadline %s is none of a's", ev.Instance.ExpiresAt)
			}
		})
	}
}

// An instance that stops heartbeating is not renewed on the other Saga
// past its last real deadline, and expires once, with both reaping.
func TestStoppedInstanceIsNotRenewedAndExpiresOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b := pullingPair(t, srv)
	aEvents, bEvents := recordEvents(t, a), recordEvents(t, b)
	if _, err := a.Register(t.Context(), registrytest.Instance("web", "x", 2, time.Now())); err != nil {
		t.Fatal(err)
	}
	renewed := heartbeatFor(t, a, "web", "x", 300*time.Millisecond, 2*time.Second)
	last := renewed[len(renewed)-1]

	var expired []registry.Event
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Go(func() {
			for end := last.Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				evs, err := s.ExpireDue(t.Context(), time.Now())
				if err != nil {
					t.Errorf("ExpireDue: %v", err)
					return
				}
				mu.Lock()
				expired = append(expired, evs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(expired) != 1 {
		t.Fatalf("the two reapers expired %d instances, want web/x once", len(expired))
	}
	for name, events := range map[string]func() []delivery{"a": aEvents, "b": bEvents} {
		n := 0
		for _, d := range events() {
			switch {
			case d.ev.Type == registry.EventExpired:
				n++
			case d.ev.Type == registry.EventHeartbeat && d.ev.Instance.ExpiresAt.After(last):
				t.Errorf("%s delivered deadline %s, after the last real one %s", name, d.ev.Instance.ExpiresAt, last)
			}
		}
		if n != 1 {
			t.Errorf("%s delivered %d expired events, want 1", name, n)
		}
	}
	if _, ok := b.pulls.tracked("web", "x"); ok {
		t.Error("b still tracks web/x after its expiry")
	}
}

// A Saga that pulls a deadline for an instance whose record it does not
// hold reads the record, and delivers the whole instance.
func TestPullFetchesAMissingRecord(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b := pullingPair(t, srv)
	reg, err := a.Register(t.Context(), registrytest.Instance("web", "x", 2, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, b, "web", "x", 0)
	b.records.remove("web", "x")
	now := time.Now()
	if _, err := a.Heartbeat(t.Context(), "web", "x", "", now); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, b.Changes(), heartbeatOf("x"))
	sameInstance(t, "b's pulled event", ev.Instance, reg.Instance.Renewed(now.Truncate(time.Millisecond), ""))
	if got := b.records.lookup("web", "x"); got.rev == 0 {
		t.Error("b did not cache the record it read")
	}
}

// The tracker hands out each instance once when it falls due, skips what
// moved since, and asks again about what Redis has not renewed.
func TestDeadlineTrackerTakesWhatFallsDue(t *testing.T) {
	var tr deadlineTracker
	const t0 = int64(1_764_115_200_000)
	lead := pullLead.Milliseconds()
	tr.saw(notice{Type: registry.EventRegistered, Service: "web", ID: "a", Index: 1, Rev: 7, Expires: t0 + 5000})
	tr.saw(notice{Type: registry.EventRegistered, Service: "web", ID: "b", Index: 2, Rev: 8, Expires: t0 + 5000})
	tr.saw(notice{Type: registry.EventRegistered, Service: "web", ID: "c", Index: 3, Rev: 9, Expires: t0 + 9000})
	if got := tr.take(t0); len(got) != 0 {
		t.Fatalf("took %v at t0, want nothing", got)
	}
	// b heartbeats later; c's status changes, with an earlier deadline
	// (another Saga's clock behind); an older heartbeat of b changes nothing.
	tr.saw(notice{Type: registry.EventHeartbeat, Service: "web", ID: "b", Index: 3, Rev: 8, Expires: t0 + 8000})
	tr.saw(notice{Type: registry.EventUpdated, Service: "web", ID: "c", Index: 4, Rev: 9, Expires: t0 + 4500})
	tr.saw(notice{Type: registry.EventHeartbeat, Service: "web", ID: "b", Index: 3, Rev: 8, Expires: t0 + 6000})
	ids := func(cs []pullCandidate) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.key.id)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	got := tr.take(t0 + 5000 - lead)
	if ids(got) != "a c" {
		t.Fatalf("took %q when a and c fall due, want a c", ids(got))
	}
	for _, c := range got {
		tr.again(c, t0+5000-lead) // not renewed in Redis
	}
	if got := tr.take(t0 + 5000 - lead + 250); ids(got) != "a c" {
		t.Errorf("took %q at the next tick, want a c again", ids(got))
	}
	tr.saw(notice{Type: registry.EventExpired, Service: "web", ID: "a", Index: 5, Rev: 7})
	if _, ok := tr.tracked("web", "a"); ok {
		t.Error("a tracked after its expiry")
	}
	// An expiry of an earlier registration does not untrack a later one.
	tr.saw(notice{Type: registry.EventExpired, Service: "web", ID: "b", Index: 1, Rev: 5})
	if _, ok := tr.tracked("web", "b"); !ok {
		t.Error("b untracked by an older expiry")
	}
	if got := tr.take(t0 + 8000 - lead); ids(got) != "b" {
		t.Errorf("took %q when b falls due, want b", ids(got))
	}
}

// While every Saga pulls, a plain heartbeat's answer is only what changed;
// the event the Saga makes of it is the whole instance, as before.
func TestPulledHeartbeatAnswersTheWholeInstance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _ := pullingPair(t, srv)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	reg, err := a.Register(t.Context(), registrytest.Instance("web", "x", 30, t0))
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	ev, err := a.Heartbeat(t.Context(), "web", "x", "", now)
	if err != nil {
		t.Fatal(err)
	}
	want := reg.Instance
	want.LastHeartbeat, want.ExpiresAt = now, now.Add(30*time.Second)
	if ev.Type != registry.EventHeartbeat || ev.Index != reg.Index || !reflect.DeepEqual(ev.Instance, want) {
		t.Fatalf("heartbeat event %+v\nwant type heartbeat, index %d, instance %+v", ev, reg.Index, want)
	}
	ev, err = a.Heartbeat(t.Context(), "web", "x", registry.StatusCritical, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != registry.EventUpdated || ev.Index != reg.Index+1 || ev.Instance.Status != registry.StatusCritical {
		t.Fatalf("status change answered %+v, want updated at index %d", ev, reg.Index+1)
	}
}

func TestCompactHeartbeat(t *testing.T) {
	held := cachedRecord{rev: 7, rec: record{Address: "10.0.0.1", Port: 80}}
	n, ok := compactHeartbeat("h 12 warning 1000 31000", "web", "x", held)
	if !ok || n.Index != 12 || n.Status != registry.StatusWarning || n.Heartbeat != 1000 || n.Expires != 31000 ||
		n.Rev != 7 || n.rec.Address != "10.0.0.1" || n.Service != "web" || n.ID != "x" {
		t.Fatalf("compactHeartbeat = %+v, %v", n, ok)
	}
	for _, raw := range []string{`{"origin":"o"}`, "h 12 warning 1000", "h x warning 1 2", "h 1 sleepy 1 2", ""} {
		if _, ok := compactHeartbeat(raw, "web", "x", held); ok {
			t.Errorf("compactHeartbeat(%q) read it", raw)
		}
	}
	if _, ok := compactHeartbeat("h 12 passing 1 2", "web", "x", cachedRecord{}); ok {
		t.Error("compactHeartbeat read an answer for a record not held")
	}
}
