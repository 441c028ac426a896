package embedded

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
)

// helperEnv makes the test binary act as a Saga process holding a store
// (see TestMain), so that tests can kill it with SIGKILL or race it for the lock.
const helperEnv = "SAGA_EMBEDDED_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv("SAGA_EMBEDDED_TEST_DIR")))
	}
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		return openStore(t, t.TempDir())
	})
}

// openStore opens a store in dir and closes it when the test ends.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var t0 = registrytest.T0

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := s.Register(t.Context(), registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Deregister(t.Context(), "web", "i0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "i1", registry.StatusWarning, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// A plain heartbeat stays in memory until Close writes it.
	if _, err := s.Heartbeat(t.Context(), "web", "i2", "", t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	before, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	after, err := openStore(t, dir).Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(after), fmt.Sprint(before); a != b {
		t.Errorf("after reopen:\n%s\nbefore Close:\n%s", a, b)
	}
	if n := len(after.Services["web"].Instances); n != 49 {
		t.Errorf("%d instances after reopen, want 49", n)
	}
}

func TestSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	lines := startHelper(t, "crash", dir)
	statusIndex, err := strconv.ParseUint(lines["status-index"], 10, 64)
	if err != nil {
		t.Fatalf("helper said status-index %q: %v", lines["status-index"], err)
	}

	s := openStore(t, dir)
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	web := snap.Services["web"]
	if len(web.Instances) != 50 || web.Index != 50 {
		t.Fatalf("after kill -9: web has %d instances at index %d, want 50 at 50", len(web.Instances), web.Index)
	}
	for _, in := range web.Instances {
		want := registrytest.Instance("web", in.ID, 60, t0)
		if in.Address != want.Address || in.Port != want.Port || len(in.Tags) != 2 || in.Metadata["zone"] != "eu-west-1a" || !in.ExpiresAt.Equal(want.ExpiresAt) {
			t.Errorf("after kill -9: %+v, want %+v", in, want)
		}
	}
	// The status change was acknowledged, so its index and status are on
	// disk; the plain heartbeat after it was not written (lazy), and start-up
	// grace makes up for such stale deadlines.
	st := snap.Services["status"]
	if st.Index != statusIndex || len(st.Instances) != 1 || st.Instances[0].Status != registry.StatusCritical {
		t.Errorf("after kill -9: status service %+v, want index %d and one critical instance", st, statusIndex)
	}
	// (Or the later one, should the helper have lived past a flush tick.)
	got, acked, flushed := st.Instances[0].ExpiresAt, t0.Add(61*time.Second), t0.Add(62*time.Second)
	if !got.Equal(acked) && !got.Equal(flushed) {
		t.Errorf("deadline %v, want %v from the acknowledged status change", got, acked)
	}
	ev, err := s.Register(t.Context(), registrytest.Instance("status", "x", 60, t0))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Index <= statusIndex {
		t.Errorf("index went backwards after kill -9: %d, want above %d", ev.Index, statusIndex)
	}
}

// TestKillDuringWrites kills a process while 32 goroutines register: every
// registration it acknowledged before the kill is there afterwards.
func TestKillDuringWrites(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=stream", "SAGA_EMBEDDED_TEST_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var acked []string
	scanner := bufio.NewScanner(stdout)
	for len(acked) < 500 && scanner.Scan() {
		acked = append(acked, scanner.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for scanner.Scan() { // acknowledged before the kill, still in the pipe
		acked = append(acked, scanner.Text())
	}
	_ = cmd.Wait()
	if len(acked) < 500 {
		t.Fatalf("helper acknowledged only %d registrations", len(acked))
	}

	snap, err := openStore(t, dir).Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, in := range snap.Services["web"].Instances {
		have[in.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged registration %s lost in the kill", id)
		}
	}
	if idx := snap.Services["web"].Index; idx < uint64(len(acked)) {
		t.Errorf("index %d after the kill, below the %d acknowledged changes", idx, len(acked))
	}
	t.Logf("%d acknowledged before the kill, %d on disk", len(acked), len(have))
}

func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	startHelper(t, "hold", dir)

	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err == nil {
		s.Close()
		t.Fatal("Open of a directory that another process holds succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("Open = %v, want ErrInUse", err)
	}
	if want := "data directory " + dir + " is in use by another saga process"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestUnusableDirectory(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T) string // returns the data directory
		want    string                    // in the error message
	}{
		{"directory is a file", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "data")
			writeFile(t, path, []byte("not a directory"))
			return path
		}, "not a directory"},
		{"below a file", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "file")
			writeFile(t, path, nil)
			return filepath.Join(path, "data")
		}, "not a directory"},
		{"data file is a directory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.prepare(t)
			s, err := Open(dir, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open = %q, want one line saying %q", err, tt.want)
			}
		})
	}
}

func TestCorruptFile(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Repeat([]byte("garbage!"), 8192))
		}},
		{"truncated", func(t *testing.T, path string) {
			writeFile(t, path, []byte("short"))
		}},
		{"damaged pages after the meta pages", func(t *testing.T, path string) {
			data := readFile(t, path)
			pageSize := os.Getpagesize()
			for i := 2 * pageSize; i < len(data); i++ {
				data[i] = byte(i*7 + 3)
			}
			writeFile(t, path, data)
		}},
		{"damaged instances page", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			var page int64
			err = db.View(func(tx *bolt.Tx) error { page = int64(tx.Bucket(bucketInstances).Root()); return nil })
			pageSize := int64(db.Info().PageSize)
			if cerr := db.Close(); err != nil || cerr != nil {
				t.Fatal(err, cerr)
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, int(pageSize)), page*pageSize); err != nil {
				t.Fatal(err)
			}
		}},
		{"another program's bbolt file", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err }); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged record", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketInstances).Put(instanceKey("web", "i3"), []byte{recordFormat, 1, 0, 0})
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if _, err := s.Register(t.Context(), registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, FileName)
			tt.corrupt(t, path)

			s, err = Open(dir, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Close()
				t.Fatal("Open of a corrupt file succeeded")
			}
			t.Log(err)
			if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "corrupt data file "+path+": ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open = %q, want one line starting \"corrupt data file %s: \" (ErrCorrupt)", err, path)
			}
		})
	}
}

func TestHeartbeatWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for i := range 10 {
		if _, err := s.Register(t.Context(), registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, FileName)
	stats := s.db.Stats()
	before, writes := sha256.Sum256(readFile(t, path)), stats.TxStats.GetWrite()
	for n := range 1000 {
		now := t0.Add(time.Duration(n) * time.Millisecond)
		if _, err := s.Heartbeat(t.Context(), "web", fmt.Sprint("i", n%10), registry.StatusPassing, now); err != nil {
			t.Fatal(err)
		}
	}
	if after := sha256.Sum256(readFile(t, path)); after != before {
		t.Error("heartbeats changed the data file")
	}
	if stats = s.db.Stats(); stats.TxStats.GetWrite() != writes {
		t.Errorf("heartbeats made %d page writes", stats.TxStats.GetWrite()-writes)
	}
}

// TestLazyFlush checks that moved deadlines reach the disk with the next
// flush tick, and not before.
func TestLazyFlush(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s, err := open(dir, slog.New(slog.DiscardHandler), options{flushInterval: 5 * time.Second, changesBuffer: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 60, t0)); err != nil {
			t.Fatal(err)
		}
		renewed := t0.Add(30 * time.Second)
		if _, err := s.Heartbeat(t.Context(), "web", "a", "", renewed); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if got, want := diskDeadline(t, s, "web", "a"), t0.Add(time.Minute); !got.Equal(want) {
			t.Errorf("before the flush: deadline on disk %v, want the registered %v", got, want)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got, want := diskDeadline(t, s, "web", "a"), renewed.Add(time.Minute); !got.Equal(want) {
			t.Errorf("after the flush: deadline on disk %v, want the renewed %v", got, want)
		}
	})
}

func TestChangesResyncAfterOverflow(t *testing.T) {
	s, err := open(t.TempDir(), slog.New(slog.DiscardHandler), options{flushInterval: time.Hour, changesBuffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 6 {
		if _, err := s.Register(t.Context(), registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 { // the buffer's four; the rest were dropped
		if ev := <-s.Changes(); ev.Type != registry.EventRegistered || ev.Index != uint64(i+1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	if _, err := s.Deregister(t.Context(), "web", "i0"); err != nil {
		t.Fatal(err)
	}
	if ev := <-s.Changes(); ev.Type != registry.EventResync {
		t.Errorf("after dropped events: %+v, want resync", ev)
	}
	if ev := <-s.Changes(); ev.Type != registry.EventDeregistered || ev.Index != 7 {
		t.Errorf("after resync: %+v, want deregistered at index 7", ev)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 60, t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "b", 60, t0)); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Register after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", "", t0); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Heartbeat after Close = %v, want ErrUnavailable", err)
	}
	n := 0
	for range s.Changes() {
		n++
	}
	if n != 1 {
		t.Errorf("Changes held %d events before closing, want 1", n)
	}
}

func TestRejectsBadInstances(t *testing.T) {
	s := openStore(t, t.TempDir())
	valid := registrytest.Instance("web", "a", 60, t0)
	tests := []struct {
		field  string
		mutate func(*registry.Instance)
	}{
		{"service", func(in *registry.Instance) { in.Service = "" }},
		{"service", func(in *registry.Instance) { in.Service = "we\x00b" }},
		{"id", func(in *registry.Instance) { in.ID = "" }},
		{"id", func(in *registry.Instance) { in.ID = "a/b" }},
		{"ttl_seconds", func(in *registry.Instance) { in.TTLSeconds = 0 }},
		{"ttl_seconds", func(in *registry.Instance) { in.TTLSeconds = registry.MaxTTLSeconds + 1 }},
		{"status", func(in *registry.Instance) { in.Status = "sick" }},
		// Not validated here, but refused rather than written unreadable.
		{"", func(in *registry.Instance) { in.Port = 70000 }},
		{"", func(in *registry.Instance) { in.Port = -1 }},
		{"", func(in *registry.Instance) { in.Tags = make([]string, registry.MaxTags+1) }},
		{"", func(in *registry.Instance) { in.Address = strings.Repeat("a", 5000) }},
	}
	for _, tt := range tests {
		in := valid.Clone()
		tt.mutate(&in)
		_, err := s.Register(t.Context(), in)
		var fe *registry.FieldError
		switch {
		case tt.field == "" && err == nil:
			t.Errorf("Register(%.200v) succeeded", in)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
			t.Errorf("Register(%+v) = %v, want a FieldError for %s", in, err, tt.field)
		}
	}
	if _, err := s.Heartbeat(t.Context(), "web", "a", "sick", t0); err == nil {
		t.Error("Heartbeat with status sick succeeded")
	}
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Services) != 0 {
		t.Errorf("bad input changed the store: %+v", snap)
	}
}

// diskDeadline reads an instance's deadline from the data file.
func diskDeadline(t *testing.T, s *Store, service, id string) time.Time {
	t.Helper()
	var e entry
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketInstances).Get(instanceKey(service, id))
		var err error
		e, err = parseEntry(v)
		return err
	})
	if err != nil {
		t.Fatalf("read %s/%s from disk: %v", service, id, err)
	}
	return fromUnixNano(e.expiresAt)
}

// startHelper re-runs the test binary as a process that holds a store in
// dir (runHelper), waits until it says "ready", and kills it with SIGKILL
// when the test ends, or at once for mode "crash". It returns what the
// helper printed before "ready", as key=value lines.
func startHelper(t *testing.T, mode, dir string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "SAGA_EMBEDDED_TEST_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait() // "signal: killed" is the expected outcome
	}
	t.Cleanup(kill)
	lines := map[string]string{}
	scanner := bufio.NewScanner(stdout)
	for scanner.Scan() {
		if scanner.Text() == "ready" {
			if mode == "crash" {
				kill()
			}
			return lines
		}
		k, v, _ := strings.Cut(scanner.Text(), "=")
		lines[k] = v
	}
	t.Fatalf("helper %s ended before it was ready (%v)", mode, scanner.Err())
	return nil
}

// runHelper is the helper process's main. Every change it reports has been
// acknowledged by the store, so it must survive the SIGKILL that follows.
func runHelper(mode, dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	s, err := Open(dir, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return fail(err)
	}
	if mode == "crash" {
		ctx := context.Background()
		for i := range 50 {
			if _, err := s.Register(ctx, registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
				return fail(err)
			}
		}
		if _, err := s.Register(ctx, registrytest.Instance("status", "x", 60, t0)); err != nil {
			return fail(err)
		}
		ev, err := s.Heartbeat(ctx, "status", "x", registry.StatusCritical, t0.Add(time.Second))
		if err != nil {
			return fail(err)
		}
		if _, err := s.Heartbeat(ctx, "status", "x", "", t0.Add(2*time.Second)); err != nil {
			return fail(err)
		}
		fmt.Printf("status-index=%d\n", ev.Index)
	}
	if mode == "stream" { // register from 32 goroutines, printing each acknowledged id
		var n atomic.Int64
		for range 32 {
			go func() {
				for {
					id := fmt.Sprint("i", n.Add(1))
					if _, err := s.Register(context.Background(), registrytest.Instance("web", id, 60, t0)); err != nil {
						fmt.Fprintln(os.Stderr, "helper:", err)
						os.Exit(1)
					}
					fmt.Println(id)
				}
			}()
		}
	} else {
		fmt.Println("ready")
	}
	for { // hold the store until killed
		time.Sleep(time.Hour)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The embedded store has one process, so its "two handles" are one: this
// proves the shared suite's own logic on a real store.
func TestSharedSuiteOnOneHandle(t *testing.T) {
	registrytest.RunShared(t, func(t *testing.T) (registry.Store, registry.Store) {
		s := openStore(t, t.TempDir())
		return s, s
	})
}
