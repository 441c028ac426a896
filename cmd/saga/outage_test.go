package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// A store outage longer than every TTL never empties the registry (SPEC §2,
// self-preservation and degraded mode), proven with two saga binaries on
// one real Redis that is frozen (SIGSTOP) or killed (SIGKILL) for four
// TTLs while clients keep heartbeating and readers keep looking up:
//
//   - no lookup on either saga ever lacks an instance that was live when
//     the outage began, and no lookup fails;
//   - once saga has noticed the outage, its answers carry X-Saga-Stale:
//     true, GET /api/v1/health says degraded, and writes answer 503
//     unavailable;
//   - after Redis is back every instance has one full TTL of grace, the
//     stale mark and the degraded status go within a few seconds, and
//     heartbeats succeed again (no 404: nothing was forgotten);
//   - expiry works again: instances that stay silent expire, the ones
//     silent since the outage began right after their grace.

const (
	// outageTTL is every instance's TTL; clients heartbeat every second.
	outageTTL = 3 * time.Second
	// outageLength is how long Redis stays away: four TTLs.
	outageLength = 4 * outageTTL
	// outageFleet is how many instances heartbeat throughout.
	outageFleet = 40
	// outageSilent is how many instances stop heartbeating just before the
	// outage: the grace after it is all that keeps them.
	outageSilent = 3
	// outageStopped is how many of the fleet stop heartbeating at the end,
	// to show that expiry works again.
	outageStopped = 4
	// outageDetect is how long saga may take to notice the outage: it
	// pings Redis every second with a one-second timeout, so up to 2 s,
	// plus slack for a race-detector build.
	outageDetect = 3 * time.Second
	// outageSettle is how soon after Redis is back the stale mark must be
	// gone and health healthy again (saga reconnects within 2 s of
	// back-off).
	outageSettle = 5 * time.Second
	// outageHold is how long after the recovery the readers keep checking
	// that the whole fleet is there: more than 1.5 TTL, and past outageSettle.
	outageHold = 2 * outageTTL
)

func TestRedisFrozenLongerThanTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proveOutageKeepsRegistry(t, srv, func() {
		if err := srv.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP redis: %v", err)
		}
	}, func() {
		if err := srv.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT redis: %v", err)
		}
	})
}

// Redis is killed and started again on the same port and directory. It
// keeps its data: redistest runs it with appendonly yes, and Redis writes
// each change to the append-only file before it answers, so a killed
// process (unlike a lost machine) loses no acknowledged write even with
// appendfsync everysec. A heartbeat answered 404 after the restart would
// mean the registration was lost, and fails the test.
func TestRedisKilledLongerThanTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proveOutageKeepsRegistry(t, srv, srv.Kill, func() {
		srv.Restart()
		n, err := srv.Client().HLen(t.Context(), "service:{fleet}:instances").Result()
		t.Logf("redis restarted holding %d registrations of fleet (%v)", n, err)
	})
}

// outageRun is one outage under load and its recorded history.
type outageRun struct {
	sagas  [2]*sagaProcess
	client *http.Client // shared transport; each caller sets its own timeout

	// Set before the history is judged. freezing and resuming are taken
	// just before Redis is stopped and brought back, frozen and resumed
	// just after.
	freezing, frozen, resuming, resumed time.Time

	mu      sync.Mutex
	lookups []outageLookup
	beats   []outageBeat
	health  []outageHealth
}

// outageLookup is one recorded GET /api/v1/services/{service}?status=any.
type outageLookup struct {
	saga      int
	service   string
	sent, got time.Time
	status    int
	stale     string // the X-Saga-Stale header
	ids       []string
	err       error
}

// outageBeat is one recorded heartbeat.
type outageBeat struct {
	saga         int
	service, id  string
	sent, got    time.Time
	status       int
	code         string // the error code of an error answer
	reregistered int    // the status of the registration a 404 led to
	err          error
}

// outageHealth is one recorded GET /api/v1/health.
type outageHealth struct {
	saga      int
	sent, got time.Time
	status    int
	health    string
	err       error
}

func proveOutageKeepsRegistry(t *testing.T, srv *redistest.Server, stop, restart func()) {
	t.Helper()
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	r := &outageRun{client: &http.Client{Transport: transport}}
	r.sagas[0] = startRedisSaga(t, srv.URL())
	r.sagas[1] = startRedisSaga(t, srv.URL())
	ttlSeconds := int(outageTTL / time.Second)

	fleet := outageIDs("fleet", outageFleet)
	silent := outageIDs("silent", outageSilent)
	for i, id := range fleet {
		e2eRegister(t, r.sagas[i%2], "fleet", id, ttlSeconds)
	}
	for i, id := range silent {
		e2eRegister(t, r.sagas[i%2], "silent", id, ttlSeconds)
	}
	for _, p := range r.sagas {
		asynctest.Eventually(t, 3*time.Second, "every registration visible on "+p.addr, func() error {
			for service, want := range map[string][]string{"fleet": fleet, "silent": silent} {
				if missing := outageMissing(want, e2eLookupOf(t, p, service+"?status=any").ids()); len(missing) > 0 {
					return fmt.Errorf("%s lacks %v", service, missing)
				}
			}
			return nil
		})
	}

	// Clients heartbeat every instance each second, through the two sagas
	// in turn; the silent ones stop just before the outage, the last few
	// of the fleet at the end.
	beating, stopBeating := context.WithCancel(context.Background())
	var beaters sync.WaitGroup
	t.Cleanup(func() { stopBeating(); beaters.Wait() })
	silence := map[string]chan struct{}{}
	for i, id := range append(slices.Clone(fleet), silent...) {
		service, _, _ := strings.Cut(id, "-")
		quiet := make(chan struct{})
		silence[id] = quiet
		offset := time.Duration(i) * time.Second / time.Duration(outageFleet+outageSilent)
		beaters.Go(func() { r.heartbeat(beating, service, id, i, offset, quiet) })
	}
	// Readers look up both services on both sagas every 100 ms; probes ask
	// each saga for its health every 250 ms.
	reading, stopReading := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	t.Cleanup(func() { stopReading(); readers.Wait() })
	for saga := range r.sagas {
		readers.Go(func() { r.read(reading, saga) })
		readers.Go(func() { r.probe(reading, saga) })
	}

	time.Sleep(1500 * time.Millisecond) // a healthy baseline, heartbeats flowing
	for _, id := range silent {
		close(silence[id])
	}
	r.freezing = time.Now()
	stop()
	r.frozen = time.Now()
	time.Sleep(time.Until(r.freezing.Add(outageLength)))
	r.resuming = time.Now()
	restart()
	r.resumed = time.Now()
	t.Logf("redis away from %s for %s (stopping took %s, restarting %s)", r.freezing.UTC().Format(time.RFC3339Nano), r.resumed.Sub(r.freezing), r.frozen.Sub(r.freezing), r.resumed.Sub(r.resuming))
	time.Sleep(time.Until(r.resumed.Add(outageHold)))
	stopReading()
	readers.Wait()

	// Expiry works again: the last few of the fleet fall silent and are
	// gone within a TTL (and a little); the silent ones went after their
	// grace. The rest of the fleet stays.
	stopped := fleet[len(fleet)-outageStopped:]
	for _, id := range stopped {
		close(silence[id])
	}
	silenced := time.Now()
	staying := fleet[:len(fleet)-outageStopped]
	for _, p := range r.sagas {
		asynctest.Eventually(t, time.Until(silenced.Add(outageTTL+2*time.Second)), "silent instances expired on "+p.addr, func() error {
			got := e2eLookupOf(t, p, "fleet?status=any").ids()
			if missing := outageMissing(staying, got); len(missing) > 0 {
				return fmt.Errorf("fleet lacks %v, which kept heartbeating", missing)
			}
			if left := outageMissing(got, staying); len(left) > 0 {
				return fmt.Errorf("fleet still lists %v, silent since %s", left, r.rel(silenced))
			}
			if left := e2eLookupOf(t, p, "silent?status=any").ids(); len(left) > 0 {
				return fmt.Errorf("silent still lists %v, silent since before the outage", left)
			}
			return nil
		})
	}
	stopBeating()
	beaters.Wait()

	r.judge(t, fleet, silent)
}

// heartbeat renews service/id every second, the first time after offset,
// through the sagas in turn, until ctx ends or silence is closed. Like
// pkg/client's KeepAlive it registers again when saga answers 404. Every
// answer is recorded; failures are otherwise ignored.
func (r *outageRun) heartbeat(ctx context.Context, service, id string, n int, offset time.Duration, silence <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(offset):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for k := n; ; k++ {
		select {
		case <-silence:
			return
		default:
		}
		b := outageBeat{saga: k % 2, service: service, id: id, sent: time.Now()}
		p := r.sagas[b.saga]
		var data []byte
		b.status, _, data, b.err = r.send(ctx, 5*time.Second, http.MethodPut, p.url("/api/v1/services/"+service+"/instances/"+id+"/heartbeat"), nil)
		b.got = time.Now()
		if ctx.Err() != nil {
			return
		}
		if b.status >= 400 {
			var e e2eErrorBody
			_ = json.Unmarshal(data, &e)
			b.code = e.Error.Code
		}
		if b.status == http.StatusNotFound {
			reg := map[string]any{"id": id, "address": "10.0.0.1", "port": 8080, "ttl_seconds": int(outageTTL / time.Second)}
			b.reregistered, _, _, _ = r.send(ctx, 5*time.Second, http.MethodPost, p.url("/api/v1/services/"+service+"/instances"), reg)
		}
		r.mu.Lock()
		r.beats = append(r.beats, b)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-silence:
			return
		case <-tick.C:
		}
	}
}

// read looks up fleet and silent on one saga every 100 ms until ctx ends.
func (r *outageRun) read(ctx context.Context, saga int) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, service := range []string{"fleet", "silent"} {
			l := outageLookup{saga: saga, service: service, sent: time.Now()}
			var header http.Header
			var data []byte
			l.status, header, data, l.err = r.send(ctx, 2*time.Second, http.MethodGet, r.sagas[saga].url("/api/v1/services/"+service+"?status=any"), nil)
			l.got = time.Now()
			if ctx.Err() != nil {
				return
			}
			if l.err == nil && l.status == http.StatusOK {
				var body e2eLookup
				if l.err = json.Unmarshal(data, &body); l.err == nil {
					l.ids = body.ids()
				}
			}
			l.stale = header.Get("X-Saga-Stale")
			r.mu.Lock()
			r.lookups = append(r.lookups, l)
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe asks one saga for its health every 250 ms until ctx ends.
func (r *outageRun) probe(ctx context.Context, saga int) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		h := outageHealth{saga: saga, sent: time.Now()}
		var data []byte
		h.status, _, data, h.err = r.send(ctx, 3*time.Second, http.MethodGet, r.sagas[saga].url("/api/v1/health"), nil)
		h.got = time.Now()
		if ctx.Err() != nil {
			return
		}
		if h.err == nil {
			var body e2eHealth
			if h.err = json.Unmarshal(data, &body); h.err == nil {
				h.health = body.Status
			}
		}
		r.mu.Lock()
		r.health = append(r.health, h)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// send makes one request with a JSON body (when not nil) and returns the
// answer's status, headers and body.
func (r *outageRun) send(ctx context.Context, timeout time.Duration, method, url string, body any) (int, http.Header, []byte, error) {
	return sendJSON(ctx, r.client, timeout, method, url, body)
}

// The phases of the outage, as the history is judged.

// before: answered before Redis was stopped.
func (r *outageRun) before(sent, got time.Time) bool { return got.Before(r.freezing) }

// during: sent once saga has had time to notice the outage, answered
// before Redis was brought back.
func (r *outageRun) during(sent, got time.Time) bool {
	return !sent.Before(r.frozen.Add(outageDetect)) && got.Before(r.resuming)
}

// settled: sent once saga has had time to notice the recovery.
func (r *outageRun) settled(sent time.Time) bool { return !sent.Before(r.resumed.Add(outageSettle)) }

// rel is a time relative to the start of the outage, for messages.
func (r *outageRun) rel(at time.Time) string {
	return fmt.Sprintf("%+.2fs", at.Sub(r.freezing).Seconds())
}

func (r *outageRun) sagaName(saga int) string { return "saga " + string(rune('A'+saga)) }

// judge checks the recorded history against the guarantees.
func (r *outageRun) judge(t *testing.T, fleet, silent []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	failed := &outageComplaints{what: "lookup failed (status or error; never allowed)"}
	shrunk := &outageComplaints{what: "lookup of fleet lacked instances that were live when the outage began"}
	early := &outageComplaints{what: "lookup of silent lacked instances before recovery + TTL (their grace)"}
	staleBefore := &outageComplaints{what: "X-Saga-Stale set before the outage"}
	notStale := &outageComplaints{what: "answer during the outage (after detection) without X-Saga-Stale: true"}
	staleAfter := &outageComplaints{what: fmt.Sprintf("X-Saga-Stale still set %s or more after Redis was back", outageSettle)}
	graceEnd := r.resuming.Add(outageTTL)
	var stale, total [2]int
	for _, l := range r.lookups {
		where := fmt.Sprintf("%s %s sent %s answered %s", r.sagaName(l.saga), l.service, r.rel(l.sent), r.rel(l.got))
		if l.err != nil || l.status != http.StatusOK {
			failed.add("%s: status %d, %v", where, l.status, l.err)
			continue
		}
		switch {
		case l.service == "fleet":
			if missing := outageMissing(fleet, l.ids); len(missing) > 0 {
				shrunk.add("%s: %d of %d (stale %q), missing %v", where, len(fleet)-len(missing), len(fleet), l.stale, missing)
			}
		case l.got.Before(graceEnd):
			if missing := outageMissing(silent, l.ids); len(missing) > 0 {
				early.add("%s: missing %v; the grace lasts until %s at least", where, missing, r.rel(graceEnd))
			}
		}
		switch {
		case r.before(l.sent, l.got) && l.stale != "":
			staleBefore.add("%s: X-Saga-Stale %q", where, l.stale)
		case r.during(l.sent, l.got):
			total[l.saga]++
			if l.stale == "true" {
				stale[l.saga]++
			} else {
				notStale.add("%s: X-Saga-Stale %q, %d instances", where, l.stale, len(l.ids))
			}
		case r.settled(l.sent) && l.stale != "":
			staleAfter.add("%s: X-Saga-Stale %q", where, l.stale)
		}
	}
	for saga := range r.sagas {
		t.Logf("%s: %d of %d lookups during the outage were marked stale", r.sagaName(saga), stale[saga], total[saga])
	}

	healthWrong := &outageComplaints{what: "GET /api/v1/health said the wrong thing"}
	for _, h := range r.health {
		where := fmt.Sprintf("%s sent %s answered %s", r.sagaName(h.saga), r.rel(h.sent), r.rel(h.got))
		var want string
		var code int
		switch {
		case r.before(h.sent, h.got), r.settled(h.sent):
			want, code = "healthy", http.StatusOK
		case r.during(h.sent, h.got):
			want, code = "degraded", http.StatusServiceUnavailable
		default:
			continue
		}
		if h.err != nil || h.status != code || h.health != want {
			healthWrong.add("%s: %d %q, %v; want %d %q", where, h.status, h.health, h.err, code, want)
		}
	}

	forgotten := &outageComplaints{what: "heartbeat answered 404: saga forgot (expired) the instance"}
	writeWrong := &outageComplaints{what: "heartbeat during the outage did not answer 503 unavailable"}
	writeFailed := &outageComplaints{what: fmt.Sprintf("heartbeat failed %s or more after Redis was back", outageSettle)}
	renewed := map[string]bool{}
	for _, b := range r.beats {
		where := fmt.Sprintf("%s %s/%s sent %s answered %s", r.sagaName(b.saga), b.service, b.id, r.rel(b.sent), r.rel(b.got))
		if b.status == http.StatusNotFound {
			forgotten.add("%s (registered again: %d)", where, b.reregistered)
		}
		switch {
		case r.during(b.sent, b.got):
			if b.err != nil || b.status != http.StatusServiceUnavailable || b.code != "unavailable" {
				writeWrong.add("%s: %d %q, %v", where, b.status, b.code, b.err)
			}
		case r.settled(b.sent):
			if b.err != nil || b.status != http.StatusOK {
				writeFailed.add("%s: %d %q, %v", where, b.status, b.code, b.err)
			}
		}
		if !b.sent.Before(r.resumed) && b.err == nil && b.status == http.StatusOK {
			renewed[b.id] = true
		}
	}
	var notRenewed []string
	for _, id := range fleet {
		if !renewed[id] {
			notRenewed = append(notRenewed, id)
		}
	}
	if len(notRenewed) > 0 {
		t.Errorf("no heartbeat succeeded after Redis was back for %d of %d instances: %v", len(notRenewed), len(fleet), notRenewed)
	}
	for _, c := range []*outageComplaints{failed, shrunk, early, staleBefore, notStale, staleAfter, healthWrong, forgotten, writeWrong, writeFailed} {
		c.report(t)
	}
}

// outageComplaints gathers the violations of one guarantee and reports how
// many there were with the first few, not hundreds of lines.
type outageComplaints struct {
	what  string
	n     int
	first []string
}

func (c *outageComplaints) add(format string, args ...any) {
	c.n++
	if len(c.first) < 6 {
		c.first = append(c.first, fmt.Sprintf(format, args...))
	}
}

func (c *outageComplaints) report(t *testing.T) {
	t.Helper()
	if c.n > 0 {
		t.Errorf("%s: %d times; the first:\n\t%s", c.what, c.n, strings.Join(c.first, "\n\t"))
	}
}

// outageIDs names n instances prefix-00, prefix-01, …
func outageIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return ids
}

// outageMissing lists the ids of want that got lacks.
func outageMissing(want, got []string) []string {
	var missing []string
	for _, id := range want {
		if !slices.Contains(got, id) {
			missing = append(missing, id)
		}
	}
	return missing
}
