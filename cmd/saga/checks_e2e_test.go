package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// probeLog records when each path of a target server was probed.
type probeLog struct {
	mu   sync.Mutex
	hits map[string][]time.Time
}

func startProbeTarget(t *testing.T) (*probeLog, string, int) {
	t.Helper()
	l := &probeLog{hits: map[string][]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.hits[r.URL.Path] = append(l.hits[r.URL.Path], time.Now())
		l.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	return l, host, n
}

// between counts the probes of path in [from, to).
func (l *probeLog) between(path string, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.hits[path] {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// maxGap is the longest time path went without a probe in [from, to].
func (l *probeLog) maxGap(path string, from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, gap := from, time.Duration(0)
	for _, at := range l.hits[path] {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// ownedChecks reads saga_checks_instances from a saga's /metrics.
func ownedChecks(t *testing.T, p *sagaProcess) int {
	t.Helper()
	resp, err := http.Get(p.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "saga_checks_instances "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatalf("%s: no saga_checks_instances in /metrics", p.addr)
	return 0
}

// Several real sagas on one real Redis run each check once: each target
// sees about one probe per interval, whether two or three sagas run; a
// saga killed with SIGKILL hands its checks over within two intervals,
// and when it comes back the load spreads again.
func TestRedisSagasShareChecks(t *testing.T) {
	t.Parallel()
	const (
		instances = 100
		interval  = 4 * time.Second
	)
	srv := redistest.Start(t)
	a := startRedisSaga(t, srv.URL())
	b := startRedisSaga(t, srv.URL())
	log, host, port := startProbeTarget(t)

	// Targets elsewhere and metadata addresses are refused at registration.
	for _, bad := range []map[string]any{
		{"address": host, "port": port, "checks": []map[string]any{{"http": "http://169.254.169.254/latest/meta-data/"}}},
		{"address": host, "port": port, "checks": []map[string]any{{"tcp": "example.com:22"}}},
	} {
		var answer struct {
			Error struct{ Field string } `json:"error"`
		}
		if status := e2eDo(t, http.MethodPost, a.url("/api/v1/services/checked/instances"), bad, &answer); status != http.StatusBadRequest || !strings.HasPrefix(answer.Error.Field, "checks[0].") {
			t.Errorf("register %v: status %d field %q, want 400 naming checks[0]", bad, status, answer.Error.Field)
		}
	}

	for i := range instances {
		body := map[string]any{"id": fmt.Sprint("i", i), "address": host, "port": port,
			"checks": []map[string]any{{"http": fmt.Sprintf("/%d", i), "interval": interval.String(), "timeout": "1s"}}}
		if status := e2eDo(t, http.MethodPost, a.url("/api/v1/services/checked/instances"), body, nil); status != http.StatusCreated {
			t.Fatalf("register i%d: status %d", i, status)
		}
	}
	onePerInterval := func(phase string, window time.Duration) {
		t.Helper()
		from := time.Now()
		time.Sleep(window)
		want := int(window / interval)
		total := 0
		for i := range instances {
			n := log.between(fmt.Sprintf("/%d", i), from, from.Add(window))
			total += n
			if n < want-1 || n > want+1 {
				t.Errorf("%s: target %d saw %d probes in %s, want %d±1 (one per interval)", phase, i, n, window, want)
			}
		}
		t.Logf("%s: %d probes of %d targets in %s (%d expected)", phase, total, instances, window, want*instances)
	}
	time.Sleep(interval) // every check has started
	onePerInterval("two sagas", 3*interval)
	if na, nb := ownedChecks(t, a), ownedChecks(t, b); na+nb != instances || na < 25 || nb < 25 {
		t.Errorf("two sagas own %d and %d instances' checks, want %d split", na, nb, instances)
	}

	c := startRedisSaga(t, srv.URL())
	time.Sleep(interval)
	onePerInterval("three sagas", 3*interval)
	if na, nb, nc := ownedChecks(t, a), ownedChecks(t, b), ownedChecks(t, c); na+nb+nc != instances || nc < 15 {
		t.Errorf("three sagas own %d, %d and %d, want %d split", na, nb, nc, instances)
	}

	// SIGKILL: no goodbye, the membership runs out.
	killed := time.Now()
	c.signal(syscall.SIGKILL)
	c.wait(10 * time.Second)
	time.Sleep(4 * interval)
	worst := time.Duration(0)
	for i := range instances {
		worst = max(worst, log.maxGap(fmt.Sprintf("/%d", i), killed, time.Now()))
	}
	t.Logf("after SIGKILL the longest wait for a probe of a target was %s", worst.Round(time.Millisecond))
	if worst > 2*interval {
		t.Errorf("after SIGKILL a target went %s without a probe, want at most two intervals (%s)", worst, 2*interval)
	}
	if na, nb := ownedChecks(t, a), ownedChecks(t, b); na+nb != instances {
		t.Errorf("after SIGKILL: %d + %d instances' checks, want %d", na, nb, instances)
	}

	// Back again: the restarted saga reads the checks from Redis and
	// takes its share once more.
	c = startRedisSaga(t, srv.URL())
	time.Sleep(interval)
	onePerInterval("restarted", 3*interval)
	if nc := ownedChecks(t, c); nc < 15 {
		t.Errorf("the restarted saga runs %d instances' checks, want its share", nc)
	}
	// No instance expired meanwhile: none had a heartbeat of its own.
	if got := e2eLookupOf(t, a, "checked"); len(got.Instances) != instances {
		t.Errorf("%d instances passing, want %d", len(got.Instances), instances)
	}
}
