package redisstore_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Redis stops under a live store for longer than every TTL, then comes
// back: the store reports unavailable meanwhile, reconnects by itself
// within 5 s, and grants one TTL of grace, so nothing expires because of
// the outage. Token notices may have been missed meanwhile, so
// TokenChanges fires once the store has subscribed again.
func TestOutageAndRecovery(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clock := registry.NewManualClock(registrytest.T0)
	s := open(t, redisstore.Options{URL: srv.URL(), Clock: clock})
	for _, id := range []string{"a", "b"} {
		if _, err := s.Register(t.Context(), registrytest.Instance("web", id, 10, clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	tok := authtest.Token(t, "before the outage")
	if err := s.CreateToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if err := s.Ping(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Ping with Redis stopped = %v, want ErrUnavailable", err)
	}
	writes := map[string]error{}
	_, writes["register"] = s.Register(t.Context(), registrytest.Instance("web", "c", 10, clock.Now()))
	_, writes["heartbeat"] = s.Heartbeat(t.Context(), "web", "a", "", clock.Now())
	_, writes["deregister"] = s.Deregister(t.Context(), "web", "b")
	_, writes["expire"] = s.ExpireDue(t.Context(), clock.Now())
	_, writes["snapshot"] = s.Snapshot(t.Context())
	writes["grace"] = s.GrantGrace(t.Context(), clock.Now())
	writes["create token"] = s.CreateToken(t.Context(), authtest.Token(t, "refused"))
	writes["bootstrap token"] = s.BootstrapToken(t.Context(), authtest.Token(t, "refused"))
	_, writes["revoke token"] = s.RevokeToken(t.Context(), tok.Accessor)
	_, writes["list tokens"] = s.ListTokens(t.Context())
	for op, err := range writes {
		if !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s with Redis stopped = %v, want ErrUnavailable", op, err)
		}
	}

	// The outage outlasts every TTL, and lasts long enough in real time for
	// the reconnection back-off to reach its cap.
	clock.Advance(time.Minute)
	time.Sleep(3 * time.Second)
	drain(s.Changes())
	authtest.Drain(s)
	srv.Restart()
	took := asynctest.Eventually(t, 5*time.Second, "store back after Redis restarted", func() error { return s.Ping(t.Context()) })
	t.Logf("store answered %s after Redis came back", took)
	waitChange(t, s.Changes(), time.Second, func(ev registry.Event) bool { return ev.Type == registry.EventResync })
	authtest.WaitChange(t, s, 5*time.Second, "after Redis came back")
	if list, err := s.ListTokens(t.Context()); err != nil || len(list) != 1 || list[0].Accessor != tok.Accessor {
		t.Errorf("tokens after the outage: %+v, %v; want only the one created before", list, err)
	}

	events, err := s.ExpireDue(t.Context(), clock.Now())
	if err != nil || len(events) != 0 {
		t.Fatalf("ExpireDue right after the outage = %v, %v; want nothing (grace)", events, err)
	}
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	web := snap.Services["web"]
	if len(web.Instances) != 2 {
		t.Fatalf("after the outage: %d instances, want a and b", len(web.Instances))
	}
	for _, in := range web.Instances {
		if want := clock.Now().Add(10 * time.Second); !in.ExpiresAt.Equal(want) {
			t.Errorf("%s expires at %v, want %v (one TTL of grace)", in.ID, in.ExpiresAt, want)
		}
	}
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "c", 10, clock.Now())); err != nil {
		t.Errorf("Register after recovery: %v", err)
	}
}

// With Redis down at start-up, Open still succeeds: the store serves
// degraded, logs each back-off step, and connects once Redis is there.
func TestStartWithRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	var logs asynctest.LogBuffer
	s, err := redisstore.Open(t.Context(), redisstore.Options{URL: srv.URL()}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("Open with Redis down: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Ping(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 10, registrytest.T0)); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Register = %v, want ErrUnavailable", err)
	}
	asynctest.Eventually(t, 5*time.Second, "two back-off steps logged", func() error {
		if n := strings.Count(logs.String(), "redis unreachable; retrying"); n < 2 {
			return errors.New(logs.String())
		}
		return nil
	})

	srv.Restart()
	asynctest.Eventually(t, 5*time.Second, "store connected after Redis started", func() error { return s.Ping(t.Context()) })
	waitChange(t, s.Changes(), time.Second, func(ev registry.Event) bool { return ev.Type == registry.EventResync })
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 10, registrytest.T0)); err != nil {
		t.Errorf("Register once connected: %v", err)
	}
	if !strings.Contains(logs.String(), "redis reachable again") {
		t.Errorf("no recovery line in the log:\n%s", logs.String())
	}
}

func drain(ch <-chan registry.Event) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
