package redisstore_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// The master dies while two clients keep registering and heartbeating:
// one plain, one that waits for a replica (MinReplicasAck=1). Plain writes
// resume within 10 s of the failover; every registration the waiting
// client had acknowledged is on the new master, and so is a token it
// created. The other client's TokenChanges fires when it subscribes again
// to the new master, since token notices may have been missed.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinel(t)
	plain := open(t, redisstore.Options{URL: set.URL()})
	acked := open(t, redisstore.Options{URL: set.URL(), MinReplicasAck: 1, AckTimeout: 500 * time.Millisecond})

	var (
		mu          sync.Mutex
		ackedIDs    []string
		lastPlainOK atomic.Int64 // unix nanos of the plain client's last successful write
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(s *redisstore.Store, service string, onOK func(id string)) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("i%d", i)
			now := time.Now().UTC()
			if _, err := s.Register(t.Context(), registrytest.Instance(service, id, 600, now)); err == nil {
				onOK(id)
			} else if !errors.Is(err, registry.ErrUnavailable) {
				t.Errorf("register %s/%s: %v, want success or ErrUnavailable", service, id, err)
			}
			if i > 0 {
				_, _ = s.Heartbeat(t.Context(), service, fmt.Sprintf("i%d", i-1), "", now)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Add(2)
	go writer(plain, "plain", func(string) { lastPlainOK.Store(time.Now().UnixNano()) })
	go writer(acked, "acked", func(id string) {
		mu.Lock()
		ackedIDs = append(ackedIDs, id)
		mu.Unlock()
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	asynctest.Eventually(t, 10*time.Second, "20 acknowledged registrations", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ackedIDs) < 20 {
			return fmt.Errorf("%d so far", len(ackedIDs))
		}
		return nil
	})
	tok := authtest.Token(t, "created before the failover")
	if err := acked.CreateToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateToken waiting for a replica: %v", err)
	}
	authtest.WaitChange(t, plain, time.Second, "the other process, after CreateToken")
	authtest.Drain(plain)

	killed := time.Now()
	promoted := set.KillMaster(30 * time.Second)
	failedOver := time.Now()
	t.Logf("replica %s promoted %s after the kill", promoted, failedOver.Sub(killed).Round(time.Millisecond))

	took := asynctest.Eventually(t, 10*time.Second, "plain writes resume after the failover", func() error {
		if last := lastPlainOK.Load(); last > failedOver.UnixNano() {
			return nil
		}
		return errors.New("no successful write since the failover")
	})
	t.Logf("plain writes resumed %s after the failover", took.Round(time.Millisecond))
	authtest.WaitChange(t, plain, 10*time.Second, "after the failover")
	if list, err := plain.ListTokens(t.Context()); err != nil || len(list) != 1 {
		t.Errorf("tokens after the failover: %+v, %v; want the one created before", list, err)
	} else {
		authtest.WantToken(t, list[0], tok)
	}
	close(stop)
	wg.Wait()

	// The new master has no replica, so a waiting write is refused, clearly.
	// The store may still be reconnecting to the new master at first.
	asynctest.Eventually(t, 10*time.Second, "a waiting write refused for want of a replica", func() error {
		_, err := acked.Register(t.Context(), registrytest.Instance("acked", "after", 600, time.Now()))
		if errors.Is(err, registry.ErrUnavailable) && strings.Contains(err.Error(), "replicas acknowledged") {
			return nil
		}
		if err == nil {
			return errors.New("register without a replica succeeded, want ErrUnavailable naming the replicas")
		}
		return fmt.Errorf("register without a replica: %w; want ErrUnavailable naming the replicas", err)
	})

	snap, err := plain.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, in := range snap.Services["acked"].Instances {
		present[in.ID] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ackedIDs {
		if !present[id] {
			t.Errorf("acknowledged registration acked/%s lost in the failover", id)
		}
	}
	t.Logf("%d acknowledged registrations, all present after the failover", len(ackedIDs))
}
