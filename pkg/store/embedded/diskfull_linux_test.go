package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
)

// TestDiskFull fills a real file system while 8 clients register: no write
// that answered an error is ever seen, in a snapshot, on the feed or after
// a restart, and every acknowledged one is. Once space is freed the store
// takes writes again by itself, with one TTL of grace and a resync, and no
// index that a reader saw ever goes backwards.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t)
	var logs asynctest.LogBuffer
	clock := registry.NewManualClock(t0)
	s, err := open(dir, slog.New(slog.NewTextHandler(&logs, nil)), options{changesBuffer: 1 << 16, clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})

	// The reader: every event, and the highest index seen.
	var (
		feedMu sync.Mutex
		feed   []registry.Event
		seen   atomic.Uint64 // the highest index any reader saw
	)
	see := func(index uint64) {
		for {
			old := seen.Load()
			if index <= old || seen.CompareAndSwap(old, index) {
				return
			}
		}
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for ev := range s.Changes() {
			see(ev.Index)
			feedMu.Lock()
			feed = append(feed, ev)
			feedMu.Unlock()
		}
	}()
	snapshot := func() registry.ServiceSnapshot {
		t.Helper()
		web := mustSnapshot(t, s).Services["web"]
		if web.Index < seen.Load() {
			t.Errorf("snapshot index %d is below %d, an index already seen", web.Index, seen.Load())
		}
		see(web.Index)
		return web
	}

	filler := fillDisk(t, dir)

	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		errored = map[string]bool{}
		next    atomic.Int64
		failed  atomic.Bool
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !failed.Load() && next.Load() < 50_000 {
				id := fmt.Sprint("i", next.Add(1))
				ev, err := s.Register(t.Context(), registrytest.Instance("web", id, 60, t0))
				mu.Lock()
				if err == nil {
					acked[id] = true
					see(ev.Index)
				} else {
					errored[id] = true
					failed.Store(true)
					if !errors.Is(err, registry.ErrUnavailable) {
						t.Errorf("register %s = %v, want ErrUnavailable", id, err)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if !failed.Load() {
		t.Fatalf("%d registrations on a full tmpfs, none failed", len(acked))
	}
	t.Logf("%d registrations acknowledged, %d refused by the full disk", len(acked), len(errored))
	if !strings.Contains(logs.String(), syscall.ENOSPC.Error()) {
		t.Errorf("the failure was not the full disk:\n%s", logs.String())
	}

	// Failed: writes answer at once, reads serve what was acknowledged.
	start := time.Now()
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "refused", 60, t0)); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("register while failed = %v, want ErrUnavailable", err)
	}
	errored["refused"] = true
	if _, err := s.Heartbeat(t.Context(), "web", "i1", "", t0.Add(time.Second)); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("heartbeat while failed = %v, want ErrUnavailable", err)
	}
	if _, err := s.ExpireDue(t.Context(), t0.Add(time.Hour)); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("ExpireDue while failed = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusing three writes took %v", took)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Ping while the disk is full = %v, want ErrUnavailable", err)
	}
	web := snapshot()
	checkAcked(t, "while failed", web, acked, errored)
	if web.Index != uint64(len(acked)) {
		t.Errorf("while failed: index %d, want %d, one per acknowledged registration", web.Index, len(acked))
	}
	time.Sleep(2 * probeInterval) // the probes fail: the disk is still full
	if err := s.Ping(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Ping while the disk is still full = %v, want ErrUnavailable", err)
	}

	// Free the space: the store comes back by itself, without a reopen.
	clock.Advance(30 * time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	asynctest.Eventually(t, 5*time.Second, "Ping after space was freed", func() error { return s.Ping(t.Context()) })
	web = snapshot()
	checkAcked(t, "after recovery", web, acked, errored)
	graced := t0.Add(90 * time.Second) // the clock's now (t0+30s) + TTL
	for _, in := range web.Instances {
		if !in.ExpiresAt.Equal(graced) {
			t.Errorf("after recovery %s expires at %v, want %v (one TTL of grace)", in.ID, in.ExpiresAt, graced)
			break
		}
	}
	before := seen.Load()
	ev, err := s.Register(t.Context(), registrytest.Instance("web", "after", 60, t0.Add(30*time.Second)))
	if err != nil {
		t.Fatalf("register after recovery: %v", err)
	}
	acked["after"] = true
	if ev.Index != uint64(len(acked)) || ev.Index <= before {
		t.Errorf("register after recovery at index %d, want %d, above the %d seen before", ev.Index, len(acked), before)
	}
	see(ev.Index)
	if n := strings.Count(logs.String(), "writing the data file works again"); n != 1 {
		t.Errorf("%d log lines about the recovery, want 1:\n%s", n, logs.String())
	}

	highest := seen.Load()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	<-readerDone

	// The feed: every acknowledged registration, no refused one, indexes
	// in order, and a resync after the failure.
	var registered = map[string]bool{}
	var last uint64
	resyncs := 0
	for _, ev := range feed {
		switch ev.Type {
		case registry.EventResync:
			resyncs++
			continue
		case registry.EventHeartbeat:
			continue
		}
		if ev.Index <= last {
			t.Errorf("feed: %s %s at index %d after index %d", ev.Type, ev.Instance.ID, ev.Index, last)
		}
		last = ev.Index
		registered[ev.Instance.ID] = true
		if errored[ev.Instance.ID] {
			t.Errorf("feed: %s of %s, whose write failed", ev.Type, ev.Instance.ID)
		}
	}
	for id := range acked {
		if !registered[id] {
			t.Errorf("feed: no event for the acknowledged registration of %s", id)
		}
	}
	if resyncs != 1 {
		t.Errorf("feed: %d resyncs, want 1 (after the recovery)", resyncs)
	}

	// A restart keeps every acknowledged registration, no refused one, and
	// indexes at least as high as any reader saw.
	s2, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	web = mustSnapshot(t, s2).Services["web"]
	checkAcked(t, "after reopen", web, acked, errored)
	if web.Index < highest {
		t.Errorf("after reopen: index %d, below %d that readers saw", web.Index, highest)
	}
	for _, in := range web.Instances {
		if in.ID != "after" && !in.ExpiresAt.Equal(graced) {
			t.Errorf("after reopen %s expires at %v, want the grace %v", in.ID, in.ExpiresAt, graced)
			break
		}
	}
}

// TestDiskFullToken fills a real file system with tokens: the token write
// that the full disk refuses answers ErrUnavailable and is never listed,
// not before the space is freed, not after, not after a restart.
func TestDiskFullToken(t *testing.T) {
	dir := mountTmpfs(t)
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	filler := fillDisk(t, dir)

	// Large descriptions fill the 64 KiB left in a few dozen writes.
	var acked []auth.Token
	var refused auth.Token
	for i := 0; refused.Accessor == ""; i++ {
		if i == 10_000 {
			t.Fatalf("%d token writes on a full tmpfs, none failed", i)
		}
		tok := authtest.Token(t, fmt.Sprint(i, strings.Repeat(" padding", 512)))
		switch err := s.CreateToken(t.Context(), tok); {
		case err == nil:
			acked = append(acked, tok)
		case errors.Is(err, registry.ErrUnavailable):
			refused = tok
		default:
			t.Fatalf("CreateToken on a full disk = %v, want ErrUnavailable", err)
		}
	}
	t.Logf("%d token writes acknowledged before the full disk refused one", len(acked))
	wantTokens(t, s, acked...)
	if err := s.CreateToken(t.Context(), authtest.Token(t, "while failed")); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("CreateToken while writes fail = %v, want ErrUnavailable", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	asynctest.Eventually(t, 5*time.Second, "Ping after space was freed", func() error { return s.Ping(t.Context()) })
	after := authtest.Token(t, "after")
	if err := s.CreateToken(t.Context(), after); err != nil {
		t.Fatalf("CreateToken after recovery: %v", err)
	}
	acked = append(acked, after)
	wantTokens(t, s, acked...)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	wantTokens(t, openStore(t, dir), acked...)
}

// mountTmpfs mounts an 8 MiB tmpfs on a temporary directory for the test,
// or skips the test when it cannot (it needs root).
func mountTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount the tmpfs: %v", err)
		}
	})
	return dir
}

// fillDisk fills the file system of dir up to 64 KiB and returns the file
// that holds the space. 64 KiB is less than a probe writes, so the store
// cannot come back before the test frees space.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if err := os.WriteFile(filler, make([]byte, free-64<<10), 0o600); err != nil {
		t.Fatalf("write the filler: %v", err)
	}
	return filler
}

// checkAcked checks that a service holds exactly the acknowledged ids.
func checkAcked(t *testing.T, when string, web registry.ServiceSnapshot, acked, errored map[string]bool) {
	t.Helper()
	have := map[string]bool{}
	for _, in := range web.Instances {
		have[in.ID] = true
		if errored[in.ID] {
			t.Errorf("%s: %s is there, but its write failed", when, in.ID)
		}
	}
	for id := range acked {
		if !have[id] {
			t.Errorf("%s: acknowledged %s is missing", when, id)
		}
	}
}
