package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// End-to-end tests of the Redis store through real saga binaries on real
// Redis processes (standalone, Cluster, Sentinel): several sagas on one
// registry agree, and a saga rides out Redis going away and coming back.

// agreeWithin is how soon a change made through one saga must be visible
// through every other (SPEC §1).
const agreeWithin = time.Second

func TestRedisSagasShareOneRegistry(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startRedisSaga(t, srv.URL())
	b := startRedisSaga(t, srv.URL())
	eventsA := followEvents(t, a, "saga A", "shared")
	eventsB := followEvents(t, b, "saga B", "shared")

	proveLookupAndWake(t, a, b, "shared")

	if status := e2eDo(t, http.MethodDelete, a.url("/api/v1/services/shared/instances/two"), nil, nil); status != http.StatusNoContent {
		t.Fatalf("deregister two on A: status %d", status)
	}
	for _, events := range []*eventLog{eventsA, eventsB} {
		events.waitFor(t, "registered", "one", agreeWithin)
		events.waitFor(t, "registered", "two", agreeWithin)
		events.waitFor(t, "deregistered", "two", agreeWithin)
	}
	// Both sagas number the same change alike: the index lives in Redis.
	for _, typ := range []string{"registered", "deregistered"} {
		if ia, ib := eventsA.waitFor(t, typ, "two", 0).Data.Index, eventsB.waitFor(t, typ, "two", 0).Data.Index; ia != ib {
			t.Errorf("%s two: index %d on A, %d on B; want the same", typ, ia, ib)
		}
	}

	// Instances that stop heartbeating expire once each, although both
	// sagas' reapers race to expire them.
	short := []string{"short-1", "short-2", "short-3"}
	for _, id := range short {
		e2eRegister(t, a, "shared", id, 1)
	}
	for _, id := range short { // one heartbeat, through the other saga, then silence
		if status := e2eDo(t, http.MethodPut, b.url("/api/v1/services/shared/instances/"+id+"/heartbeat"), nil, nil); status != http.StatusOK {
			t.Fatalf("heartbeat %s on B: status %d", id, status)
		}
	}
	registered := eventsA.waitFor(t, "registered", short[len(short)-1], agreeWithin).Data.Index
	// They expire a second after the heartbeat, and the event follows
	// within a second; the rest is slack for a busy machine.
	for _, events := range []*eventLog{eventsA, eventsB} {
		for _, id := range short {
			events.waitFor(t, "expired", id, 4*time.Second)
		}
	}
	// A second expiry by the other saga would reach both streams well
	// within this: each reaper runs every 250 ms, notices take milliseconds.
	time.Sleep(1500 * time.Millisecond)
	for _, events := range []*eventLog{eventsA, eventsB} {
		var indexes []uint64
		for _, ev := range events.all() {
			if ev.Type == "expired" {
				indexes = append(indexes, ev.Data.Index)
			}
		}
		for _, id := range short {
			if n := events.count("expired", id); n != 1 {
				t.Errorf("%s: %d expired events for %s, want exactly 1; saw %s", events.name, n, id, describeEvents(events.all()))
			}
		}
		// Each expiry moved the service's index by exactly one.
		slices.Sort(indexes)
		if want := []uint64{registered + 1, registered + 2, registered + 3}; !slices.Equal(indexes, want) {
			t.Errorf("%s: expired at indexes %v, want %v (the last registration was %d)", events.name, indexes, want, registered)
		}
	}
	for _, p := range []*sagaProcess{a, b} {
		got := e2eLookupOf(t, p, "shared")
		if want := registered + uint64(len(short)); got.Index != want || !slices.Equal(got.ids(), []string{"one"}) {
			t.Errorf("lookup on %s after the expiry: index %d, instances %v; want index %d and [one]", p.addr, got.Index, got.ids(), want)
		}
	}
}

func TestRedisClusterSagasShareOneRegistry(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t)
	a := startRedisSaga(t, cluster.URL())
	b := startRedisSaga(t, cluster.URL())
	for _, p := range []*sagaProcess{a, b} {
		if status, h := e2eHealthOf(t, p); status != http.StatusOK || h.Storage != "redis" || h.Redis != "connected" {
			t.Fatalf("health on %s: %d %+v, want 200 on redis, connected", p.addr, status, h)
		}
	}
	// These names hash to slots 865, 9053 and 15419: one on each of the
	// three masters, which split the 16384 slots evenly.
	for _, service := range []string{"alpha", "delta", "beta"} {
		proveLookupAndWake(t, a, b, service)
	}
	// So every master took part (the catalogue key lives on one of them).
	for _, node := range cluster.Nodes {
		keys, err := node.Client().Keys(t.Context(), "service:{*").Result()
		if err != nil {
			t.Fatalf("KEYS on %s: %v", node.Addr, err)
		}
		held := map[string]bool{}
		for _, key := range keys {
			name, _, _ := strings.Cut(strings.TrimPrefix(key, "service:{"), "}")
			held[name] = true
		}
		if len(held) != 1 {
			t.Errorf("master %s holds the keys of services %v; want exactly one of alpha, delta, beta", node.Addr, slices.Sorted(maps.Keys(held)))
		}
	}
}

// proveLookupAndWake registers "one" on a and sees it on b within
// agreeWithin; then a blocking query on b wakes, with the change in its
// answer, when "two" registers on a.
func proveLookupAndWake(t *testing.T, a, b *sagaProcess, service string) {
	t.Helper()
	e2eRegister(t, a, service, "one", 3600)
	took := asynctest.Eventually(t, agreeWithin, "a registration on A visible on B", func() error {
		if got := e2eLookupOf(t, b, service); !got.has("one") {
			return fmt.Errorf("B lists %v", got.ids())
		}
		return nil
	})
	t.Logf("%s: registered on A, visible on B after %s", service, took)

	before := e2eLookupOf(t, b, service)
	woke := startBlockingLookup(t, b, service, before.Index, 30*time.Second)
	select {
	case ans := <-woke:
		t.Fatalf("blocking query on B returned before any change: %+v", ans)
	case <-time.After(300 * time.Millisecond): // long enough to reach its wait
	}
	e2eRegister(t, a, service, "two", 3600)
	changed := time.Now()
	select {
	case ans := <-woke:
		if ans.err != nil || ans.status != http.StatusOK {
			t.Fatalf("blocking query on B: status %d, %v", ans.status, ans.err)
		}
		if elapsed := ans.at.Sub(changed); elapsed > agreeWithin {
			t.Errorf("blocking query on B woke %s after the change on A, want within %s", elapsed, agreeWithin)
		}
		if ans.body.Index <= before.Index || !ans.body.has("one") || !ans.body.has("two") {
			t.Errorf("woken answer on B: index %d (was %d), instances %v; want a newer index with one and two", ans.body.Index, before.Index, ans.body.ids())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocking query on B did not wake for a change made on A")
	}
}

// Redis stops under a running saga for longer than the instances' TTL and
// comes back: saga answers from memory meanwhile, reports itself degraded,
// refuses writes, recovers by itself, and expires nothing because of the
// outage (one TTL of grace).
func TestRedisOutageUnderRunningSaga(t *testing.T) {
	t.Parallel()
	const (
		shortTTL = 2 // seconds
		outage   = 4 * time.Second
	)
	srv := redistest.Start(t)
	p := startRedisSaga(t, srv.URL())
	events := followEvents(t, p, "saga", "steady")
	e2eRegister(t, p, "steady", "long", 3600)
	short := []string{"short-1", "short-2"}
	for _, id := range short {
		e2eRegister(t, p, "steady", id, shortTTL)
	}
	before := e2eLookupOf(t, p, "steady")
	if len(before.Instances) != 1+len(short) {
		t.Fatalf("before the outage: %v, want long and %v", before.ids(), short)
	}

	srv.Stop()
	stopped := time.Now()
	// Well within the short TTL: every instance is still live, and served
	// from memory.
	if got := e2eLookupOf(t, p, "steady"); !slices.Equal(got.ids(), before.ids()) || got.Index != before.Index {
		t.Errorf("lookup with Redis just stopped: index %d, %v; want index %d, %v", got.Index, got.ids(), before.Index, before.ids())
	}
	noticed := asynctest.Eventually(t, 5*time.Second, "health degraded after Redis stopped", func() error {
		status, h := e2eHealthOf(t, p)
		if status != http.StatusServiceUnavailable || h.Status != "degraded" || h.Redis != "disconnected" || h.Storage != "redis" {
			return fmt.Errorf("health %d %+v, want 503 degraded, redis disconnected", status, h)
		}
		return nil
	})
	t.Logf("degraded %s after Redis stopped", noticed)
	if status := e2eDo(t, http.MethodGet, p.url("/readyz"), nil, nil); status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz during the outage: status %d, want 503", status)
	}
	if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusOK {
		t.Errorf("GET /livez during the outage: status %d, want 200", status)
	}
	writes := map[string]func() (int, e2eErrorBody){
		"register": func() (int, e2eErrorBody) {
			var body e2eErrorBody
			reg := map[string]any{"id": "during", "address": "10.0.0.2", "port": 8080, "ttl_seconds": 60}
			return e2eDo(t, http.MethodPost, p.url("/api/v1/services/steady/instances"), reg, &body), body
		},
		"heartbeat": func() (int, e2eErrorBody) {
			var body e2eErrorBody
			return e2eDo(t, http.MethodPut, p.url("/api/v1/services/steady/instances/long/heartbeat"), nil, &body), body
		},
		"deregister": func() (int, e2eErrorBody) {
			var body e2eErrorBody
			return e2eDo(t, http.MethodDelete, p.url("/api/v1/services/steady/instances/long"), nil, &body), body
		},
	}
	for name, write := range writes {
		if status, body := write(); status != http.StatusServiceUnavailable || body.Error.Code != "unavailable" || body.Error.Message == "" {
			t.Errorf("%s during the outage: status %d, %+v; want 503 unavailable with a message", name, status, body.Error)
		}
	}
	// Lookups answer from memory for the whole outage. The short
	// instances drop out of them once their deadline passes, as they must
	// (an instance past expires_at is never returned), so "long" is the
	// one to look for throughout.
	for time.Since(stopped) < outage {
		got := e2eLookupOf(t, p, "steady")
		if !got.has("long") || got.Index != before.Index {
			t.Fatalf("lookup during the outage: index %d, instances %v; want index %d with long", got.Index, got.ids(), before.Index)
		}
		time.Sleep(200 * time.Millisecond)
	}

	srv.Restart()
	took := asynctest.Eventually(t, 5*time.Second, "saga healthy after Redis restarted", func() error {
		status, h := e2eHealthOf(t, p)
		if status != http.StatusOK || h.Status != "healthy" || h.Redis != "connected" {
			return fmt.Errorf("health %d %+v, want 200 healthy, redis connected", status, h)
		}
		if status := e2eDo(t, http.MethodGet, p.url("/readyz"), nil, nil); status != http.StatusOK {
			return fmt.Errorf("readyz %d", status)
		}
		return nil
	})
	t.Logf("healthy %s after Redis restarted", took)

	// The short instances could not heartbeat for longer than their TTL;
	// the grace lets them renew now instead of registering again.
	heartbeat := func(id string) {
		t.Helper()
		if status := e2eDo(t, http.MethodPut, p.url("/api/v1/services/steady/instances/"+id+"/heartbeat"), nil, nil); status != http.StatusOK {
			t.Fatalf("heartbeat %s after recovery: status %d, want 200 (a 404 means the outage expired it)", id, status)
		}
	}
	for _, id := range short {
		heartbeat(id)
	}
	e2eRegister(t, p, "steady", "after", 3600)
	// Keep the short instances alive across more than their TTL.
	for range 3 {
		time.Sleep(time.Second)
		for _, id := range short {
			heartbeat(id)
		}
	}
	want := append([]string{"after", "long"}, short...)
	slices.Sort(want)
	got := e2eLookupOf(t, p, "steady").ids()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("lookup after recovery: %v, want %v", got, want)
	}
	for _, id := range append([]string{"long"}, short...) {
		if n := events.count("expired", id); n != 0 {
			t.Errorf("%s expired because of the outage; events %s", id, describeEvents(events.all()))
		}
	}
	events.waitFor(t, "registered", "after", agreeWithin) // the stream outlived the outage
}

// A saga started while Redis is unreachable serves degraded, keeps retrying
// instead of exiting, and is healthy within 5 s of Redis starting.
func TestRedisUnreachableAtStartUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	p := startRedisSaga(t, srv.URL())

	if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusOK {
		t.Errorf("GET /livez with Redis down: status %d, want 200", status)
	}
	if status := e2eDo(t, http.MethodGet, p.url("/readyz"), nil, nil); status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with Redis down: status %d, want 503", status)
	}
	if status, h := e2eHealthOf(t, p); status != http.StatusServiceUnavailable || h.Status != "degraded" || h.Redis != "disconnected" {
		t.Errorf("health with Redis down: %d %+v, want 503 degraded, redis disconnected", status, h)
	}
	var refused e2eErrorBody
	reg := map[string]any{"id": "early", "address": "10.0.0.1", "port": 8080}
	if status := e2eDo(t, http.MethodPost, p.url("/api/v1/services/web/instances"), reg, &refused); status != http.StatusServiceUnavailable || refused.Error.Code != "unavailable" {
		t.Errorf("register with Redis down: status %d, %+v; want 503 unavailable", status, refused.Error)
	}
	// It keeps running and retrying: one log line per back-off step.
	asynctest.Eventually(t, 10*time.Second, "two back-off steps logged", func() error {
		if n := strings.Count(p.logs.String(), "redis unreachable; retrying"); n < 2 {
			return fmt.Errorf("%d back-off lines", n)
		}
		return nil
	})
	select {
	case <-p.exited:
		t.Fatalf("saga exited with Redis down: %v", p.err)
	default:
	}

	srv.Restart()
	took := asynctest.Eventually(t, 5*time.Second, "saga healthy after Redis started", func() error {
		if status, h := e2eHealthOf(t, p); status != http.StatusOK || h.Status != "healthy" || h.Redis != "connected" {
			return fmt.Errorf("health %d %+v", status, h)
		}
		if status := e2eDo(t, http.MethodGet, p.url("/readyz"), nil, nil); status != http.StatusOK {
			return fmt.Errorf("readyz %d", status)
		}
		return nil
	})
	t.Logf("healthy %s after Redis started", took)
	e2eRegister(t, p, "web", "late", 3600)
	if got := e2eLookupOf(t, p, "web"); !slices.Equal(got.ids(), []string{"late"}) {
		t.Errorf("lookup after Redis started: %v, want [late]", got.ids())
	}
}

// Saga on a Sentinel-watched master registers and looks up, and its
// writes resume within 10 s when the master dies and a replica takes over,
// while a client keeps writing throughout.
func TestRedisSentinelFailoverThroughSaga(t *testing.T) {
	t.Parallel()
	const resumeWithin = 10 * time.Second
	set := redistest.StartSentinel(t)
	p := startRedisSaga(t, set.URL())
	e2eRegister(t, p, "ha", "before", 3600)
	if got := e2eLookupOf(t, p, "ha"); !slices.Equal(got.ids(), []string{"before"}) {
		t.Fatalf("lookup through sentinel: %v, want [before]", got.ids())
	}
	// Replication is asynchronous; let the replica have the registration
	// before its master dies, so the test is about saga, not about that.
	waitReplicaInSync(t, set)

	// A client registers and heartbeats without pause through the
	// failover, and records when its writes succeed.
	load, stopLoad := context.WithCancel(context.Background())
	var mu sync.Mutex
	var lastOK time.Time
	var loadWG sync.WaitGroup
	loadWG.Go(func() {
		client := &http.Client{Timeout: 2 * time.Second}
		for i := 0; load.Err() == nil; i++ {
			req, _ := http.NewRequestWithContext(load, http.MethodPut, p.url("/api/v1/services/ha/instances/before/heartbeat"), nil)
			if i%2 == 0 {
				body := fmt.Sprintf(`{"id":"load-%d","address":"10.0.0.3","port":8080,"ttl_seconds":3600}`, i)
				req, _ = http.NewRequestWithContext(load, http.MethodPost, p.url("/api/v1/services/ha/instances"), strings.NewReader(body))
			}
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode < 300 {
					mu.Lock()
					lastOK = time.Now()
					mu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Cleanup(func() { stopLoad(); loadWG.Wait() })

	promoted := set.KillMaster(20 * time.Second)
	failedOver := time.Now()
	t.Logf("replica %s promoted", promoted)
	took := asynctest.Eventually(t, resumeWithin, "writes through saga after the failover", func() error {
		mu.Lock()
		defer mu.Unlock()
		if lastOK.Before(failedOver) {
			return errors.New("no write succeeded since the failover")
		}
		return nil
	})
	t.Logf("writes resumed %s after the failover", took)
	stopLoad()
	loadWG.Wait()

	e2eRegister(t, p, "ha", "after", 3600)
	got := e2eLookupOf(t, p, "ha")
	for _, id := range []string{"before", "after"} {
		if !got.has(id) {
			t.Errorf("lookup after the failover lacks %s: %v", id, got.ids())
		}
	}
	if status, h := e2eHealthOf(t, p); status != http.StatusOK || h.Redis != "connected" {
		t.Errorf("health after the failover: %d %+v, want 200, redis connected", status, h)
	}
}

// waitReplicaInSync waits until the replica has acknowledged every write
// the master had made when it was called. The master's offset keeps
// moving (the sentinels publish through it), so the target is fixed first.
func waitReplicaInSync(t *testing.T, set *redistest.SentinelSet) {
	t.Helper()
	master := set.Master.Client()
	replication := func() (masterOffset, replicaOffset int64, err error) {
		info, err := master.Info(t.Context(), "replication").Result()
		if err != nil {
			return 0, 0, err
		}
		masterOffset, replicaOffset = -1, -1
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				masterOffset, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := strings.CutPrefix(line, "slave0:"); ok {
				for field := range strings.SplitSeq(v, ",") {
					if o, ok := strings.CutPrefix(field, "offset="); ok {
						replicaOffset, _ = strconv.ParseInt(o, 10, 64)
					}
				}
			}
		}
		if masterOffset < 0 || replicaOffset < 0 {
			return 0, 0, fmt.Errorf("no offsets in INFO replication:\n%s", info)
		}
		return masterOffset, replicaOffset, nil
	}
	target, _, err := replication()
	if err != nil {
		t.Fatal(err)
	}
	asynctest.Eventually(t, 5*time.Second, "replica in sync", func() error {
		_, replica, err := replication()
		if err != nil {
			return err
		}
		if replica < target {
			return fmt.Errorf("replica at offset %d, want %d", replica, target)
		}
		return nil
	})
}
