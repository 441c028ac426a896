package checks

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/embedded"
	"github.com/sagaproject/saga/pkg/view"
)

// rig is a real embedded store and view with a checker running on them.
type rig struct {
	store *embedded.Store
	view  *view.View
	sub   *view.Subscription
}

func newRig(t *testing.T, members Membership, self string) *rig {
	t.Helper()
	s, err := embedded.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return startOn(t, s, members, self)
}

func startOn(t *testing.T, s *embedded.Store, members Membership, self string) *rig {
	t.Helper()
	r := &rig{store: s, view: view.New(registry.SystemClock{})}
	r.sub = r.view.Subscribe(nil)
	t.Cleanup(r.sub.Close)
	c := New(Options{Store: s, View: r.view, Apply: r.view.Apply, Members: members, Self: self, Tick: 50 * time.Millisecond})
	ctx, stop := t.Context(), make(chan struct{})
	go func() { c.Run(ctx); close(stop) }()
	t.Cleanup(func() { <-stop })
	return r
}

// register stores an instance built without the API's validation, so the
// tests may use intervals below a second.
func (r *rig) register(t *testing.T, id, address string, port int, ttl int, checks ...registry.Check) registry.Instance {
	t.Helper()
	return registerOn(t, r.store, []*view.View{r.view}, id, address, port, ttl, checks...)
}

// registerOn registers through store and applies the event to views.
func registerOn(t *testing.T, s *embedded.Store, views []*view.View, id, address string, port int, ttl int, checks ...registry.Check) registry.Instance {
	t.Helper()
	in := registry.NewInstance("db", registry.Registration{ID: id, Address: address, Port: port, TTLSeconds: ttl, Checks: checks}, time.Now(), time.Minute)
	ev, err := s.Register(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		v.Apply(ev)
	}
	return ev.Instance
}

// next waits for the next updated or removal event.
func (r *rig) next(t *testing.T, within time.Duration) registry.Event {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev := <-r.sub.Events():
			if ev.Type != registry.EventRegistered {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no event within %s", within)
		}
	}
}

func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// The instance follows a real HTTP target: 200 passing, 500 critical after
// failures_before_critical probes, 429 warning, 200 passing again; each
// change an updated event with a new index, and the output on the view.
func TestHTTPFollowsTarget(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/healthz" || r.Header.Get("X-Probe") != "saga" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(code.Load()))
		fmt.Fprintf(w, "code %d", code.Load())
	}))
	defer target.Close()
	host, port := hostPort(t, target.Listener.Addr().String())

	r := newRig(t, nil, "")
	r.register(t, "a", host, port, 60, registry.Check{HTTP: "/healthz", Interval: "100ms", Timeout: "1s", Headers: map[string]string{"X-Probe": "saga"}})

	var last uint64
	want := func(status registry.Status) {
		t.Helper()
		ev := r.next(t, 5*time.Second)
		if ev.Type != registry.EventUpdated || ev.Instance.Status != status || ev.Index <= last {
			t.Fatalf("event %s %s index %d, want updated %s above %d", ev.Type, ev.Instance.Status, ev.Index, status, last)
		}
		last = ev.Index
	}
	want(registry.StatusPassing) // registered critical, passing at the first probe
	in, _ := r.view.Instance("db", "a")
	if c := in.Checks[0]; c.Status != registry.StatusPassing || !strings.Contains(c.Output, "200 OK: code 200") || c.LastChecked == nil {
		t.Errorf("check on the view: %+v", c)
	}

	code.Store(500)
	before := hits.Load()
	want(registry.StatusCritical)
	if n := hits.Load() - before; n < 3 {
		t.Errorf("critical after %d failed probes, want 3 (failures_before_critical)", n)
	}
	code.Store(429)
	want(registry.StatusWarning)
	code.Store(200)
	want(registry.StatusPassing)
}

// A TCP check follows a listener closed and opened again on its port.
func TestTCPFollowsListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAll(ln)
	host, port := hostPort(t, addr)
	r := newRig(t, nil, "")
	r.register(t, "pg", host, 1, 60, registry.Check{TCP: ":" + strconv.Itoa(port), Interval: "100ms", Timeout: "500ms", FailuresBeforeCritical: 1})
	if ev := r.next(t, 5*time.Second); ev.Instance.Status != registry.StatusPassing {
		t.Fatalf("open listener: %s", ev.Instance.Status)
	}
	_ = ln.Close()
	if ev := r.next(t, 5*time.Second); ev.Instance.Status != registry.StatusCritical {
		t.Fatalf("closed listener: %s", ev.Instance.Status)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAll(ln)
	if ev := r.next(t, 5*time.Second); ev.Instance.Status != registry.StatusPassing {
		t.Fatalf("reopened listener: %s", ev.Instance.Status)
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// A target that hangs past the timeout is critical, and the probe does
// not wait for it.
func TestHangingTargetTimesOut(t *testing.T) {
	release := make(chan struct{})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer target.Close()
	defer close(release)
	host, port := hostPort(t, target.Listener.Addr().String())
	r := newRig(t, nil, "")
	r.register(t, "a", host, port, 60, registry.Check{HTTP: "/fast", Interval: "100ms", Timeout: "200ms"})
	r.register(t, "b", host, port, 60, registry.Check{HTTP: "/slow", Interval: "100ms", Timeout: "200ms", FailuresBeforeCritical: 1})
	start := time.Now()
	if ev := r.next(t, 5*time.Second); ev.Instance.ID != "a" || ev.Instance.Status != registry.StatusPassing {
		t.Fatalf("first change %s %s, want a passing", ev.Instance.ID, ev.Instance.Status)
	}
	time.Sleep(time.Second)
	in, _ := r.view.Instance("db", "b")
	if in.Status != registry.StatusCritical || !strings.Contains(in.Checks[0].Output, "deadline exceeded") {
		t.Errorf("hanging target: %s %+v", in.Status, in.Checks[0])
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
}

// An instance critical for deregister_critical_after is removed.
func TestDeregisterCriticalAfter(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer target.Close()
	host, port := hostPort(t, target.Listener.Addr().String())
	r := newRig(t, nil, "")
	r.register(t, "a", host, port, 60, registry.Check{HTTP: "/", Interval: "100ms", Timeout: "1s", DeregisterCriticalAfter: "500ms"})
	if ev := r.next(t, 5*time.Second); ev.Type != registry.EventDeregistered {
		t.Fatalf("event %s, want deregistered", ev.Type)
	}
}

// An instance with checks needs no heartbeats: the checker renews it.
func TestCheckerRenewsDeadline(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	host, port := hostPort(t, target.Listener.Addr().String())
	r := newRig(t, nil, "")
	in := r.register(t, "a", host, port, 3, registry.Check{HTTP: "/", Interval: "30s"})
	time.Sleep(4 * time.Second)
	got, ok := r.view.Instance("db", "a")
	if !ok || !got.ExpiresAt.After(in.ExpiresAt) {
		t.Fatalf("instance after its first TTL: %v %+v", ok, got)
	}
}

// Link-local and metadata addresses are refused at dial time, whatever
// name led there.
func TestForbiddenAddressesNeverDialled(t *testing.T) {
	for _, addr := range []string{"169.254.169.254:80", "[fe80::1]:80", "[fd00:ec2::254]:80", "[::ffff:169.254.169.254]:80"} {
		if err := refuseForbidden("tcp", addr, nil); err == nil {
			t.Errorf("%s: dial allowed", addr)
		}
	}
	if err := refuseForbidden("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("loopback refused: %v", err)
	}
	res := newProber().probe(t.Context(), registry.Check{HTTP: "/", Method: "GET"}, "http://169.254.169.254/latest/meta-data/", time.Second)
	if res.status != registry.StatusCritical || !strings.Contains(res.output, "never checked") {
		t.Errorf("metadata probe: %+v", res)
	}
	if !registry.ForbiddenCheckIP(netip.MustParseAddr("169.254.0.1")) {
		t.Errorf("link-local allowed")
	}
}

// Owner spreads keys evenly, and a member that joins takes only its share.
func TestOwnerRendezvous(t *testing.T) {
	two, three := []string{"a", "b"}, []string{"a", "b", "c"}
	counts := map[string]int{}
	moved := 0
	for i := range 3000 {
		key := fmt.Sprintf("web/%d", i)
		o2, o3 := Owner(two, key), Owner(three, key)
		counts[o3]++
		if o2 != o3 && o3 != "c" {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys moved between the old members", moved)
	}
	for m, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("member %s owns %d of 3000", m, n)
		}
	}
}

// fakeMembers is a membership that tests change by hand.
type fakeMembers struct {
	mu      sync.Mutex
	members []string
}

func (f *fakeMembers) Announce(_ context.Context, _ string, _ time.Duration) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.members...), nil
}
func (f *fakeMembers) Leave(context.Context, string) error { return nil }

func (f *fakeMembers) set(m ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = m
}

// Two checkers on one store probe each target once per interval between
// them, and one takes everything over when the other leaves.
func TestOneProbePerIntervalAcrossMembers(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	target := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
	}))
	defer target.Close()
	host, port := hostPort(t, target.Listener.Addr().String())

	s, err := embedded.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	members := &fakeMembers{members: []string{"m1", "m2"}}
	a := startOn(t, s, members, "m1")
	b := startOn(t, s, members, "m2")
	const n = 20
	for i := range n {
		registerOn(t, s, []*view.View{a.view, b.view}, fmt.Sprint("i", i), host, port, 60, registry.Check{HTTP: fmt.Sprintf("/%d", i), Interval: "200ms"})
	}
	count := func(d time.Duration) map[string]int {
		mu.Lock()
		clear(hits)
		mu.Unlock()
		time.Sleep(d)
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(hits)
	}
	// 2 s at 200 ms is 10 probes, one member's worth; two members each
	// probing would make 20. The lower bound only says that the check
	// runs: a busy machine (the race detector) delays timers.
	const low, high = 5, 14
	time.Sleep(500 * time.Millisecond) // every check has started
	got := count(2 * time.Second)
	for i := range n {
		if h := got[fmt.Sprintf("/%d", i)]; h < low || h > high {
			t.Errorf("target %d saw %d probes in 2 s, want about 10", i, h)
		}
	}
	members.set("m1")
	// The members are read once a second, and a check taken over runs
	// within a second after that.
	time.Sleep(2500 * time.Millisecond)
	got = count(2 * time.Second)
	for i := range n {
		if h := got[fmt.Sprintf("/%d", i)]; h < low || h > high {
			t.Errorf("after m2 left, target %d saw %d probes in 2 s, want about 10", i, h)
		}
	}
}
