package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// scriptedStore is a registry.Store whose answers a test sets; for the
// logic of the pump only (the real stores are tested
// with the daemon and in their own packages).
type scriptedStore struct {
	registry.Store // methods the tests do not script panic (nil)

	mu        sync.Mutex
	changes   chan registry.Event
	snapshot  registry.Snapshot
	snapshots int
}

func newScriptedStore() *scriptedStore {
	return &scriptedStore{changes: make(chan registry.Event, 16), snapshot: registry.Snapshot{Services: map[string]registry.ServiceSnapshot{}}}
}

func (s *scriptedStore) Changes() <-chan registry.Event { return s.changes }

func (s *scriptedStore) Snapshot(context.Context) (registry.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots++
	return s.snapshot, nil
}

func (s *scriptedStore) set(f func(s *scriptedStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *scriptedStore) snapshotCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

func testInstance(clock registry.Clock, service, id string) registry.Instance {
	return registry.NewInstance(service, registry.Registration{ID: id, Address: "10.0.0.1", Port: 80}, clock.Now(), time.Hour)
}

func TestPumpAppliesEventsAndReloadsOnResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := registry.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		store := newScriptedStore()
		v := view.New(clock)
		d := New(Options{Clock: clock})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { d.pump(ctx, store, v); close(done) }()

		store.changes <- registry.Event{Type: registry.EventRegistered, Service: "web", Instance: testInstance(clock, "web", "a"), Index: 1}
		synctest.Wait()
		if _, ok := v.Instance("web", "a"); !ok {
			t.Fatal("a registered event on the feed did not reach the view")
		}

		// Lost events: the store sends a resync, the pump reloads a snapshot.
		store.set(func(s *scriptedStore) {
			s.snapshot.Services["web"] = registry.ServiceSnapshot{Index: 5, Instances: []registry.Instance{testInstance(clock, "web", "b")}}
		})
		store.changes <- registry.Event{Type: registry.EventResync}
		synctest.Wait()
		if _, ok := v.Instance("web", "b"); !ok || v.ServiceIndex("web") != 5 {
			t.Fatal("a resync did not reload the view from a snapshot")
		}

		// The periodic refresh reloads even without a resync.
		before := store.snapshotCount()
		time.Sleep(refreshInterval + time.Second)
		synctest.Wait()
		if after := store.snapshotCount(); after != before+1 {
			t.Fatalf("%d snapshots in one refresh interval, want 1", after-before)
		}

		cancel()
		<-done
	})
}

func TestReloadAppliesTheLogLevelAndReportsTheRest(t *testing.T) {
	start := config.Default()
	next := start
	next.Log.Level = slog.LevelDebug
	next.Server.Port = 9999
	var loadErr error
	logs := &logSink{}
	level := new(slog.LevelVar)
	d := New(Options{
		Config: &start,
		Reload: func() (*config.Config, error) {
			if loadErr != nil {
				return nil, loadErr
			}
			c := next
			return &c, nil
		},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level})),
		Level:  level,
	})

	d.Reload()
	if level.Level() != slog.LevelDebug {
		t.Fatalf("level after reload %s, want debug", level.Level())
	}
	rec, ok := logs.find("log level changed")
	if !ok || rec["from"] != "info" || rec["to"] != "debug" {
		t.Fatalf("log level change logged as %v", rec)
	}
	rec, ok = logs.find("configuration changed; these settings take effect after a restart")
	if keys, _ := rec["keys"].([]any); !ok || len(keys) != 1 || keys[0] != "server.port" {
		t.Fatalf("restart-only changes logged as %v", rec)
	}

	loadErr = errors.New(`config: log.level: "loud" must be debug, info, warn or error (from file x)`)
	d.Reload()
	if level.Level() != slog.LevelDebug {
		t.Fatal("a failed reload changed the level")
	}
	if _, ok := logs.find("reload failed; keeping the running configuration"); !ok {
		t.Fatal("a failed reload was not logged")
	}

	loadErr = nil
	d.Reload()
	if _, ok := logs.find("configuration reloaded; nothing changed"); !ok {
		t.Fatal("a reload that changed nothing was not logged")
	}
}
