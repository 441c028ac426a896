package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// holdFirst holds the first command it sees until release is closed, so
// that a test can queue writes behind a round trip in flight.
type holdFirst struct {
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func (h *holdFirst) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *holdFirst) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() != "ping" {
			h.once.Do(func() { close(h.held); <-h.release })
		}
		return next(ctx, cmd)
	}
}

func (h *holdFirst) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

func (s *Store) queued() int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return len(s.batch.queue)
}

// Writes that arrive while a round trip is in flight go out together in the
// next one, a pipeline with one heartbeat script call per service; each
// gets its own answer.
func TestConcurrentWritesShareRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 6 {
		for _, svc := range []string{"web", "api"} {
			if _, err := s.Register(t.Context(), registrytest.Instance(svc, fmt.Sprint("i", i), 30, t0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Redis holds every script from now on: no NOSCRIPT below.
	if _, err := s.Heartbeat(t.Context(), "web", "i0", "", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deregister(t.Context(), "web", "nobody"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatal(err)
	}
	hold := &holdFirst{held: make(chan struct{}), release: make(chan struct{})}
	s.client.AddHook(hold)
	log := &commandLog{}
	s.client.AddHook(log)

	now := t0.Add(time.Second)
	type result struct {
		ev  registry.Event
		err error
	}
	results := map[string]*result{}
	var wg sync.WaitGroup
	write := func(name string, f func() (registry.Event, error)) {
		r := &result{}
		results[name] = r
		wg.Go(func() { r.ev, r.err = f() })
	}
	write("first", func() (registry.Event, error) { return s.Heartbeat(t.Context(), "web", "i0", "", now) })
	<-hold.held // in flight: everything below queues
	for i := 1; i < 6; i++ {
		for _, svc := range []string{"web", "api"} {
			write(svc+fmt.Sprint(i), func() (registry.Event, error) { return s.Heartbeat(t.Context(), svc, fmt.Sprint("i", i), "", now) })
		}
	}
	write("unknown", func() (registry.Event, error) { return s.Heartbeat(t.Context(), "web", "nobody", "", now) })
	write("warning", func() (registry.Event, error) {
		return s.Heartbeat(t.Context(), "api", "i0", registry.StatusWarning, now)
	})
	write("deregister", func() (registry.Event, error) { return s.Deregister(t.Context(), "db", "nobody") })
	write("register", func() (registry.Event, error) {
		return s.Register(t.Context(), registrytest.Instance("web", "new", 30, now))
	})
	for s.queued() < len(results)-1 {
		time.Sleep(time.Millisecond)
	}
	close(hold.release)
	wg.Wait()

	for name, r := range results {
		switch name {
		case "unknown", "deregister":
			if !errors.Is(r.err, registry.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, r.err)
			}
		case "register":
			if r.err != nil || r.ev.Type != registry.EventRegistered {
				t.Errorf("register: %+v, %v", r.ev, r.err)
			}
		case "warning":
			if r.err != nil || r.ev.Type != registry.EventUpdated || r.ev.Instance.Status != registry.StatusWarning {
				t.Errorf("status change: %+v, %v", r.ev, r.err)
			}
		default:
			if r.err != nil || r.ev.Type != registry.EventHeartbeat || !r.ev.Instance.ExpiresAt.Equal(now.Add(30*time.Second)) {
				t.Errorf("%s: %+v, %v; want a heartbeat to %v", name, r.ev, r.err, now.Add(30*time.Second))
			}
		}
	}
	// The lone heartbeat, then one pipeline: two heartbeat calls (web,
	// api), the registration and the deregistration.
	var trips []string
	for _, trip := range log.take() {
		if strings.Contains(trip, "evalsha") { // not a new connection's HELLO and CLIENT
			trips = append(trips, trip)
		}
	}
	if len(trips) != 2 || trips[0] != "evalsha" || strings.Count(trips[1], "evalsha") != 4 {
		t.Errorf("round trips %q, want one evalsha, then one pipeline of four", trips)
	}
}

// With redis.min_replicas_ack, a batch's pipeline ends in one WAIT, whose
// answer applies to every registration in it; heartbeats do not wait.
func TestBatchWaitsForReplicasOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // no replica: every WAIT answers 0
	s, err := Open(t.Context(), Options{URL: srv.URL(), MinReplicasAck: 1, AckTimeout: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, t0)); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register without replicas: %v, want ErrUnavailable", err)
	}
	hold := &holdFirst{held: make(chan struct{}), release: make(chan struct{})}
	s.client.AddHook(hold)
	log := &commandLog{}
	s.client.AddHook(log)

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = s.Heartbeat(t.Context(), "web", "a", "", t0) })
	<-hold.held
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Register(t.Context(), registrytest.Instance("web", fmt.Sprint("b", i), 30, t0))
		})
	}
	var hbErr error
	wg.Go(func() { _, hbErr = s.Heartbeat(t.Context(), "web", "a", "", t0.Add(time.Second)) })
	for s.queued() < 4 {
		time.Sleep(time.Millisecond)
	}
	close(hold.release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "only 0 of 1") {
			t.Errorf("register %d: %v, want ErrUnavailable naming 0 of 1 replicas", i, err)
		}
	}
	if hbErr != nil {
		t.Errorf("heartbeat beside the registrations: %v", hbErr)
	}
	var waits int
	for _, trip := range log.take() {
		waits += strings.Count(trip, "wait")
		if strings.Contains(trip, "wait") && strings.Count(trip, "evalsha") != 3 {
			t.Errorf("round trip %q, want the three registrations before one WAIT", trip)
		}
	}
	if waits != 1 {
		t.Errorf("%d WAITs for one batch, want 1", waits)
	}
	// The changes were made all the same.
	for i := range 3 {
		if n, _ := srv.Client().ZCard(t.Context(), "service:{web}:deadlines").Result(); n != 4 {
			t.Fatalf("web holds %d instances after register %d, want 4", n, i)
		}
	}
}

// A plain heartbeat publishes its notice only when it moves the deadline
// announceStep or more past the one last published, or earlier; the
// caller's own answer always has the new deadline.
func TestHeartbeatNoticesOnlyWhenTheDeadlineMovesEnough(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	raw := srv.Client().Subscribe(t.Context(), changeChannel)
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, t0)); err != nil {
		t.Fatal(err)
	}
	msgs := raw.Channel()
	receive := func(wait time.Duration) (string, bool) {
		select {
		case msg := <-msgs:
			return msg.Payload, true
		case <-time.After(wait):
			return "", false
		}
	}
	if _, ok := receive(time.Second); !ok {
		t.Fatal("no notice of the registration")
	}
	step := 100 * time.Millisecond
	var published []string
	for i := 1; i <= 12; i++ {
		now := t0.Add(time.Duration(i) * step)
		ev, err := s.Heartbeat(t.Context(), "web", "a", "", now)
		if err != nil || !ev.Instance.ExpiresAt.Equal(now.Add(30*time.Second)) {
			t.Fatalf("heartbeat %d: %+v, %v", i, ev, err)
		}
		if payload, ok := receive(100 * time.Millisecond); ok {
			published = append(published, fmt.Sprint(i))
			if !strings.Contains(payload, fmt.Sprintf(`"expires":%d`, millis(now.Add(30*time.Second)))) {
				t.Errorf("notice of heartbeat %d: %s", i, payload)
			}
		}
	}
	// Published at 500 ms and at 1 s past the registration's deadline.
	if got := strings.Join(published, " "); got != "5 10" {
		t.Errorf("heartbeats %s published, want 5 10", got)
	}
	// A deadline that moves earlier than the one published (another
	// Saga's clock behind) is published: others must not serve past it.
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", t0.Add(900*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, ok := receive(time.Second); !ok {
		t.Error("a deadline moved earlier was not published")
	}
}
