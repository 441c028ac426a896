package redisstore

import (
	"context"
	"fmt"
	"slices"
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

// commandLog records the commands a client sends, one entry per round trip.
type commandLog struct {
	mu    sync.Mutex
	trips []string
}

func (l *commandLog) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (l *commandLog) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if name := cmd.Name(); name != "ping" { // the health monitor's
			l.add(name)
		}
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmd.Name()
		}
		l.add("pipeline(" + strings.Join(names, ",") + ")")
		return next(ctx, cmds)
	}
}

func (l *commandLog) add(trip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = append(l.trips, trip)
}

func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	trips := l.trips
	l.trips = nil
	return trips
}

func openInternal(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{URL: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// A heartbeat is one round trip: a single EVALSHA, even after Redis lost
// its script cache (then one EVALSHA answered NOSCRIPT and one EVAL).
func TestHeartbeatIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, registrytest.T0)); err != nil {
		t.Fatal(err)
	}
	// The first heartbeat loads the script into Redis's cache.
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", registrytest.T0); err != nil {
		t.Fatal(err)
	}
	log := &commandLog{}
	s.client.AddHook(log)

	if _, err := s.Heartbeat(t.Context(), "web", "a", "", registrytest.T0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if trips := log.take(); len(trips) != 1 || trips[0] != "evalsha" {
		t.Errorf("heartbeat sent %v, want one evalsha", trips)
	}

	if err := srv.Client().ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", registry.StatusWarning, registrytest.T0.Add(2*time.Second)); err != nil {
		t.Fatalf("heartbeat after SCRIPT FLUSH: %v", err)
	}
	if trips := log.take(); strings.Join(trips, " ") != "evalsha eval" {
		t.Errorf("heartbeat after SCRIPT FLUSH sent %v, want evalsha then eval", trips)
	}
	if err := srv.Client().ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	// The batched scripts reload the script and retry.
	events, err := s.ExpireDue(t.Context(), registrytest.T0.Add(time.Hour))
	if err != nil || len(events) != 1 {
		t.Fatalf("ExpireDue after SCRIPT FLUSH = %v, %v; want web/a expired", events, err)
	}
}

// A user name, password and database number in the URL are used: the
// store logs in as an ACL user and writes to the database named.
func TestURLCredentialsAndDatabase(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client()
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "saga", "on", ">p@ss word", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}
	s := openInternal(t, "redis://saga:p%40ss%20word@"+srv.Addr+"/3")
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, registrytest.T0)); err != nil {
		t.Fatalf("Register as the ACL user: %v", err)
	}
	db3 := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "saga", Password: "p@ss word", DB: 3})
	defer db3.Close()
	if n, err := db3.Exists(t.Context(), "service:{web}:index", "service:catalog").Result(); err != nil || n != 2 {
		t.Errorf("database 3 holds %d of the store's keys (%v), want 2", n, err)
	}

	wrong, err := Open(t.Context(), Options{URL: "redis://saga:wrong@" + srv.Addr + "/3"}, nil)
	if err != nil {
		t.Fatalf("Open with a wrong password = %v; want a degraded store", err)
	}
	defer wrong.Close()
	if err := wrong.Ping(t.Context()); err == nil {
		t.Error("Ping with a wrong password succeeded")
	}
}

// Between sweeps of the whole catalogue, the reaper's calls run the expire
// script only for services with something due, learned from notices,
// including those of another process.
func TestExpireDueRunsOnlyDueServices(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := openInternal(t, srv.URL())
	b := openInternal(t, srv.URL())
	t0 := registrytest.T0
	for _, in := range []registry.Instance{
		registrytest.Instance("web", "a", 3, t0),
		registrytest.Instance("api", "b", 60, t0),
	} {
		if _, err := a.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{a, b} { // the first call sweeps
		if events, err := s.ExpireDue(t.Context(), t0); err != nil || len(events) != 0 {
			t.Fatalf("first ExpireDue = %v, %v; want nothing", events, err)
		}
	}
	log := &commandLog{}
	a.client.AddHook(log)

	if events, err := a.ExpireDue(t.Context(), t0.Add(time.Second)); err != nil || len(events) != 0 {
		t.Fatalf("ExpireDue with nothing due = %v, %v", events, err)
	}
	if trips := log.take(); len(trips) != 0 {
		t.Errorf("ExpireDue with nothing due sent %v, want nothing", trips)
	}
	events, err := a.ExpireDue(t.Context(), t0.Add(3*time.Second))
	if err != nil || len(events) != 1 || events[0].Instance.ID != "a" {
		t.Fatalf("ExpireDue at web/a's deadline = %v, %v; want web/a", events, err)
	}
	if trips := log.take(); strings.Join(trips, " ") != "pipeline(evalsha)" {
		t.Errorf("ExpireDue with web due sent %v, want one evalsha in a pipeline", trips)
	}

	// b hears of a short-lived instance registered through a and expires it
	// before its next sweep.
	if _, err := a.Register(t.Context(), registrytest.Instance("web", "c", 1, t0.Add(3*time.Second))); err != nil {
		t.Fatal(err)
	}
	deadline := millis(t0.Add(4 * time.Second))
	asynctest.Eventually(t, time.Second, "b hears of web/c", func() error {
		b.due.mu.Lock()
		next, ok := b.due.next["web"]
		b.due.mu.Unlock()
		if !ok || next > deadline {
			return fmt.Errorf("web due at %d (known: %t), want by %d", next, ok, deadline)
		}
		return nil
	})
	events, err = b.ExpireDue(t.Context(), t0.Add(4*time.Second))
	if err != nil || len(events) != 1 || events[0].Instance.ID != "c" {
		t.Fatalf("b's ExpireDue = %v, %v; want web/c", events, err)
	}

	// A sweep still finds what no notice announced.
	if err := srv.Client().ZAdd(t.Context(), "service:{api}:deadlines", goredis.Z{Score: float64(millis(t0)), Member: "b"}).Err(); err != nil {
		t.Fatal(err)
	}
	if events, err := a.ExpireDue(t.Context(), t0.Add(4500*time.Millisecond)); err != nil || len(events) != 0 {
		t.Fatalf("ExpireDue before the sweep = %v, %v; want nothing (api looked not due)", events, err)
	}
	events, err = a.ExpireDue(t.Context(), t0.Add(sweepEvery))
	if err != nil || len(events) != 1 || events[0].Instance.ID != "b" {
		t.Fatalf("sweeping ExpireDue = %v, %v; want api/b", events, err)
	}
}

// The store speaks RESP2: it uses nothing of RESP3, on which go-redis looks
// for push notifications around every command of the heartbeat path.
func TestClientSpeaksRESP2(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, registrytest.T0)); err != nil {
		t.Fatal(err)
	}
	list, err := srv.Client().ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for line := range strings.Lines(list) {
		if strings.Contains(line, "cmd=client|list") {
			continue // the test's own connection
		}
		seen++
		if !slices.Contains(strings.Fields(line), "resp=2") {
			t.Errorf("a store connection does not speak RESP2: %s", strings.TrimSpace(line))
		}
	}
	if seen == 0 {
		t.Error("no store connection in CLIENT LIST")
	}
}
