package embedded

import (
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
)

var errDiskFull = errors.New("no space left on device (injected)")

// faultyDisk fails write transactions while full is set, or the next
// failures of them, and can hold the committer inside its transaction until
// released, so that a test can queue a batch on top of the one being written.
type faultyDisk struct {
	mu       sync.Mutex
	full     bool
	failures int
	hold     chan struct{}
}

func (d *faultyDisk) hook() error {
	d.mu.Lock()
	hold := d.hold
	d.mu.Unlock()
	if hold != nil {
		<-hold
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failures > 0 {
		d.failures--
		return errDiskFull
	}
	if d.full {
		return errDiskFull
	}
	return nil
}

func (d *faultyDisk) failNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures = n
}

func (d *faultyDisk) setFull(full bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full = full
}

// holdWrites makes the next write transaction wait; the returned function
// lets it go on.
func (d *faultyDisk) holdWrites() (release func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	hold := make(chan struct{})
	d.hold = hold
	return func() {
		d.mu.Lock()
		d.hold = nil
		d.mu.Unlock()
		close(hold)
	}
}

type result struct {
	ev  registry.Event
	err error
}

// async runs fn in a goroutine and returns where its result will arrive.
func async(fn func() (registry.Event, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ev, err := fn()
		ch <- result{ev, err}
	}()
	return ch
}

// received returns the events waiting on the feed, without blocking.
func received(s *Store) []registry.Event {
	var evs []registry.Event
	for {
		select {
		case ev := <-s.Changes():
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// TestFailedCommitIsNeverSeen fails a batch while a second one waits on top
// of it: neither is ever seen, both callers get ErrUnavailable, the store
// refuses writes until the disk takes them again, then grants grace, asks
// for a resync and reuses the indexes that nobody saw.
func TestFailedCommitIsNeverSeen(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		disk := &faultyDisk{}
		clock := registry.NewManualClock(t0)
		s, err := open(dir, slog.New(slog.DiscardHandler), options{
			flushInterval: time.Hour, probeInterval: time.Second, changesBuffer: 64,
			clock: clock, writeHook: disk.hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()

		if _, err := s.Register(ctx, registrytest.Instance("web", "a", 60, t0)); err != nil {
			t.Fatal(err)
		}
		received(s)

		// b is being written (held).
		release := disk.holdWrites()
		regB := async(func() (registry.Event, error) {
			return s.Register(ctx, registrytest.Instance("web", "b", 60, t0))
		})
		synctest.Wait()
		// a is committed: its heartbeat answers at once, and renews the
		// deadline that readers see.
		ev, err := s.Heartbeat(ctx, "web", "a", "", t0.Add(2*time.Second))
		if err != nil || ev.Type != registry.EventHeartbeat || ev.Index != 1 {
			t.Fatalf("heartbeat of a committed instance while writes are queued = %+v, %v", ev, err)
		}
		// a's deregistration is queued on top of b's batch, at index 3.
		deregA := async(func() (registry.Event, error) { return s.Deregister(ctx, "web", "a") })
		// b exists only in the batch being written: its heartbeat waits.
		beatB := async(func() (registry.Event, error) { return s.Heartbeat(ctx, "web", "b", "", t0.Add(time.Second)) })
		synctest.Wait()
		s.mu.Lock()
		queued := s.pending != nil && s.pending.indexes["web"] == 3
		s.mu.Unlock()
		if !queued {
			t.Fatal("a's deregistration is not queued at index 3 on top of b's batch")
		}
		web := mustSnapshot(t, s).Services["web"]
		if web.Index != 1 || len(web.Instances) != 1 || web.Instances[0].ID != "a" {
			t.Fatalf("while b's batch is being written, snapshot %+v, want only a at index 1", web)
		}
		if evs := received(s); len(evs) != 1 || evs[0].Type != registry.EventHeartbeat {
			t.Fatalf("while b's batch is being written, Changes sent %+v, want only a's heartbeat", evs)
		}

		// Only b's batch fails; the one on top of it would fit, but is
		// computed on a state that never was.
		disk.failNext(1)
		release()
		synctest.Wait()
		for name, ch := range map[string]<-chan result{"register b": regB, "deregister a": deregA, "heartbeat b": beatB} {
			if r := <-ch; !errors.Is(r.err, registry.ErrUnavailable) {
				t.Errorf("%s on top of a failed write = %+v, %v, want ErrUnavailable", name, r.ev, r.err)
			}
		}
		if evs := received(s); len(evs) != 0 {
			t.Errorf("failed writes sent %+v on Changes", evs)
		}
		web = mustSnapshot(t, s).Services["web"]
		if web.Index != 1 || len(web.Instances) != 1 || web.Instances[0].ID != "a" {
			t.Fatalf("after the failed writes, snapshot %+v, want only a at index 1", web)
		}
		if got, want := web.Instances[0].ExpiresAt, t0.Add(62*time.Second); !got.Equal(want) {
			t.Errorf("a's deadline %v, want %v from the acknowledged heartbeat", got, want)
		}

		// Failed: every write is refused at once, reads go on.
		wantUnavailable(t, s)
		disk.setFull(true)
		time.Sleep(5 * time.Second) // probes on a disk that is still full
		synctest.Wait()
		if err := s.Ping(ctx); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("Ping while the disk is still full = %v, want ErrUnavailable", err)
		}

		clock.Advance(30 * time.Second)
		disk.setFull(false)
		time.Sleep(time.Second)
		synctest.Wait()
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping one probe after the disk took writes again = %v", err)
		}
		if evs := received(s); len(evs) != 1 || evs[0].Type != registry.EventResync {
			t.Errorf("on recovery Changes sent %+v, want one resync", evs)
		}
		web = mustSnapshot(t, s).Services["web"]
		if got, want := web.Instances[0].ExpiresAt, t0.Add(90*time.Second); !got.Equal(want) {
			t.Errorf("after recovery a's deadline is %v, want %v (one TTL of grace)", got, want)
		}
		ev, err = s.Register(ctx, registrytest.Instance("web", "b", 60, t0))
		if err != nil || ev.Type != registry.EventRegistered || ev.Index != 2 {
			t.Errorf("register after recovery = %+v, %v, want registered at index 2 (nobody saw the failed one)", ev, err)
		}
		if evs := received(s); len(evs) != 1 || evs[0].Index != 2 {
			t.Errorf("register after recovery sent %+v", evs)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s, err = open(dir, slog.New(slog.DiscardHandler), options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		web = mustSnapshot(t, s).Services["web"]
		if web.Index != 2 || len(web.Instances) != 2 {
			t.Errorf("after reopen: %+v, want a and b at index 2", web)
		}
	})
}

// TestHeartbeatOfQueuedInstance: a heartbeat that finds an instance only
// in a batch not yet on disk renews it there, answers once the batch is on
// disk, and its event follows the registration's.
func TestHeartbeatOfQueuedInstance(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		disk := &faultyDisk{}
		s, err := open(dir, slog.New(slog.DiscardHandler), options{flushInterval: time.Hour, changesBuffer: 64, writeHook: disk.hook})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()

		release := disk.holdWrites()
		reg := async(func() (registry.Event, error) {
			return s.Register(ctx, registrytest.Instance("web", "a", 60, t0))
		})
		synctest.Wait()
		beat := async(func() (registry.Event, error) { return s.Heartbeat(ctx, "web", "a", "", t0.Add(10*time.Second)) })
		synctest.Wait()
		select {
		case r := <-beat:
			t.Fatalf("heartbeat answered %+v, %v before the registration was on disk", r.ev, r.err)
		default:
		}
		release()
		if r := <-reg; r.err != nil {
			t.Fatal(r.err)
		}
		r := <-beat
		renewed := t0.Add(70 * time.Second)
		if r.err != nil || r.ev.Type != registry.EventHeartbeat || !r.ev.Instance.ExpiresAt.Equal(renewed) {
			t.Fatalf("heartbeat = %+v, %v, want the deadline %v", r.ev, r.err, renewed)
		}
		evs := received(s)
		if len(evs) != 2 || evs[0].Type != registry.EventRegistered || evs[1].Type != registry.EventHeartbeat || evs[1].Index != 1 {
			t.Fatalf("Changes sent %+v, want registered then heartbeat at index 1", evs)
		}
		if got := mustSnapshot(t, s).Services["web"].Instances[0].ExpiresAt; !got.Equal(renewed) {
			t.Errorf("snapshot deadline %v, want %v", got, renewed)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = open(dir, slog.New(slog.DiscardHandler), options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := mustSnapshot(t, s).Services["web"].Instances[0].ExpiresAt; !got.Equal(renewed) {
			t.Errorf("after reopen the deadline is %v, want %v (flushed at Close)", got, renewed)
		}
	})
}

// TestFailedExpiryIsRetried: an expiry that could not be written leaves
// the instance in place; once writes work again (after the grace) the
// next ExpireDue removes it.
func TestFailedExpiryIsRetried(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		disk := &faultyDisk{}
		clock := registry.NewManualClock(t0)
		s, err := open(dir, slog.New(slog.DiscardHandler), options{flushInterval: time.Hour, clock: clock, writeHook: disk.hook})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Register(ctx, registrytest.Instance("web", "a", 5, t0)); err != nil {
			t.Fatal(err)
		}
		disk.setFull(true)
		if evs, err := s.ExpireDue(ctx, t0.Add(10*time.Second)); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("ExpireDue on a full disk = %+v, %v, want ErrUnavailable", evs, err)
		}
		if n := len(mustSnapshot(t, s).Services["web"].Instances); n != 1 {
			t.Fatalf("a failed expiry removed the instance from the snapshot")
		}
		clock.Advance(10 * time.Second)
		disk.setFull(false)
		time.Sleep(time.Second)
		synctest.Wait()
		// Grace: due at t0+15s now, not before.
		if evs, err := s.ExpireDue(ctx, t0.Add(14*time.Second)); err != nil || len(evs) != 0 {
			t.Fatalf("ExpireDue within the grace = %+v, %v, want nothing", evs, err)
		}
		evs, err := s.ExpireDue(ctx, t0.Add(15*time.Second))
		if err != nil || len(evs) != 1 || evs[0].Type != registry.EventExpired || evs[0].Index != 2 {
			t.Fatalf("ExpireDue after the grace = %+v, %v, want a expired at index 2", evs, err)
		}
	})
}

// TestRecoveryReopensLostHandle: when bbolt's handle is no longer usable
// (it answers ErrDatabaseNotOpen or ErrInvalidMapping, as after a failed
// grow of its memory map), the probe opens the file again.
func TestRecoveryReopensLostHandle(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		disk := &faultyDisk{}
		s, err := open(dir, slog.New(slog.DiscardHandler), options{flushInterval: time.Hour, writeHook: disk.hook})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Register(ctx, registrytest.Instance("web", "a", 60, t0)); err != nil {
			t.Fatal(err)
		}
		disk.setFull(true)
		if _, err := s.Register(ctx, registrytest.Instance("web", "b", 60, t0)); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("Register on a full disk = %v, want ErrUnavailable", err)
		}
		s.mu.Lock()
		lost := s.db
		s.mu.Unlock()
		if err := lost.Close(); err != nil {
			t.Fatal(err)
		}
		disk.setFull(false)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping after the handle was lost and the disk took writes again = %v", err)
		}
		s.mu.Lock()
		reopened := s.db != lost
		s.mu.Unlock()
		if !reopened {
			t.Error("the store kept the lost handle")
		}
		ev, err := s.Register(ctx, registrytest.Instance("web", "b", 60, t0))
		if err != nil || ev.Index != 2 {
			t.Fatalf("Register after reopening = %+v, %v, want index 2", ev, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = open(dir, slog.New(slog.DiscardHandler), options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if web := mustSnapshot(t, s).Services["web"]; web.Index != 2 || len(web.Instances) != 2 {
			t.Errorf("after reopen: %+v, want a and b at index 2", web)
		}
	})
}

// wantUnavailable checks that every write, and Ping, answer ErrUnavailable.
func wantUnavailable(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	checks := map[string]error{"Ping": s.Ping(ctx)}
	_, checks["Register"] = s.Register(ctx, registrytest.Instance("web", "refused", 60, t0))
	_, checks["Heartbeat"] = s.Heartbeat(ctx, "web", "a", "", t0)
	_, checks["Heartbeat with a status"] = s.Heartbeat(ctx, "web", "a", registry.StatusCritical, t0)
	_, checks["Deregister"] = s.Deregister(ctx, "web", "a")
	_, checks["ExpireDue"] = s.ExpireDue(ctx, t0.Add(time.Hour))
	checks["GrantGrace"] = s.GrantGrace(ctx, t0)
	for name, err := range checks {
		if !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s while writes fail = %v, want ErrUnavailable", name, err)
		}
	}
}

func mustSnapshot(t *testing.T, s *Store) registry.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
