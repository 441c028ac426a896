package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A full disk never empties the registry nor shows a change that it
// refused (SPEC §2, degraded mode; docs/storage.md, "When a write fails"),
// proven with a real saga on the embedded store whose data directory is on
// a small tmpfs. While clients heartbeat a fleet, writers register new
// instances and readers look up, the test fills the tmpfs, keeps it full
// for two TTLs, deletes the filler, and at the end restarts saga on the
// same data directory:
//
//   - every change answers 201, 200, 204 or 503 unavailable: never another
//     5xx, never a dropped connection (a panic would drop it);
//   - once saga has refused a change, every change is refused with 503
//     unavailable until space is freed, and after a second lookups carry
//     X-Saga-Stale: true and GET /api/v1/health says degraded;
//   - no lookup lacks a fleet instance while its clients heartbeat
//     (nothing expires while heartbeats cannot get through); none, from the
//     start to after the restart, lacks a registration acknowledged before
//     it was sent and not deregistered, nor shows one that was refused,
//     nor does the event stream; no index a reader saw ever goes backwards,
//     not even across the restart;
//   - within a few seconds of the filler being deleted, without a restart,
//     changes succeed again, the stale mark and the degraded status are
//     gone, and every fleet instance renews (no heartbeat answered 404);
//   - saga logs the full disk once, and its recovery once.

const (
	// diskFullTTL is the fleet's TTL; its clients heartbeat every second.
	diskFullTTL = 3 * time.Second
	// diskFullFleet is how many instances heartbeat throughout.
	diskFullFleet = 30
	// diskFullDurable is how many long-lived instances are registered
	// before the writers start.
	diskFullDurable = 10
	// diskFullDurableTTL, in seconds, outlives the test and the restart.
	diskFullDurableTTL = 3600
	// diskFullWriters register new long-lived instances, each pausing
	// diskFullWritePause between two.
	diskFullWriters    = 3
	diskFullWritePause = 50 * time.Millisecond
	// diskFullFail is how soon after the disk is full saga must have
	// refused a change: the writers need new pages at once.
	diskFullFail = 5 * time.Second
	// diskFullDetect is how long after its first refusal saga may take to
	// mark lookups stale: it pings the store every 250 ms.
	diskFullDetect = time.Second
	// diskFullLength is how long the disk stays full after the first
	// refusal: two TTLs, so every fleet deadline passes meanwhile.
	diskFullLength = 2 * diskFullTTL
	// diskFullSettle is how soon after the filler is deleted everything
	// must be back to normal: saga probes the disk every second.
	diskFullSettle = 5 * time.Second
	// diskFullHold is how long the clients go on after the filler is
	// deleted: past diskFullSettle, and more than a TTL.
	diskFullHold = diskFullSettle + 2*time.Second
)

func TestDiskFullKeepsRegistry(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "16m")
	env := sagaEnv(t)
	args := []string{"serve", "--port", "0", "--data-dir", filepath.Join(mnt, "data")}

	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	r := &diskFullRun{
		client:  &http.Client{Transport: transport},
		fleet:   outageIDs("fleet", diskFullFleet),
		refused: make(chan struct{}),
	}
	first := startSaga(t, env, args...)
	r.saga.set(first)
	events := followEvents(t, first, "saga", "durable")
	durable := outageIDs("durable", diskFullDurable)
	for _, id := range r.fleet {
		r.mustChange(t, http.MethodPost, "fleet", id)
	}
	for _, id := range durable {
		r.mustChange(t, http.MethodPost, "durable", id)
	}

	// Clients: a heartbeat for each fleet instance every second, spread
	// over the second; writers registering durable instances; two readers
	// looking up both services and the catalogue every 100 ms; a probe
	// asking for the health report every 200 ms.
	running, stop := context.WithCancel(context.Background())
	var clients sync.WaitGroup
	t.Cleanup(func() { stop(); clients.Wait() })
	for i, id := range r.fleet {
		offset := time.Duration(i) * time.Second / diskFullFleet
		clients.Go(func() { r.heartbeat(running, id, offset) })
	}
	for w := range diskFullWriters {
		clients.Go(func() { r.write(running, w) })
	}
	for n := range 2 {
		clients.Go(func() { r.read(running, fmt.Sprint("reader ", n+1)) })
	}
	clients.Go(func() { r.probe(running) })

	time.Sleep(1500 * time.Millisecond) // a healthy baseline
	filler := filepath.Join(mnt, "filler")
	r.filling = time.Now()
	size := fillDisk(t, filler)
	r.filled = time.Now()
	select {
	case <-r.refused:
	case <-time.After(diskFullFail):
		t.Fatalf("the disk has been full for %s (a filler of %d KiB) and saga refused no change", diskFullFail, size>>10)
	}
	refusedAt := r.firstRefusal()
	t.Logf("filled the disk with %d KiB in %s; the first refusal answered %s after", size>>10, r.filled.Sub(r.filling).Round(time.Millisecond), refusedAt.Sub(r.filled).Round(time.Millisecond))

	// A deregistration is refused like the rest, and changes nothing:
	// durable-00 stays (judge checks that every lookup shows it).
	time.Sleep(time.Until(refusedAt.Add(diskFullDetect)))
	r.change(t.Context(), http.MethodDelete, "durable", durable[0])

	time.Sleep(time.Until(refusedAt.Add(diskFullLength)))
	r.freeing = time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.freed = time.Now()
	time.Sleep(time.Until(r.freed.Add(diskFullHold)))
	r.silenced = time.Now()
	stop()
	clients.Wait()

	// Back to normal: two durable instances leave, one more comes, and
	// every read shows it.
	for _, id := range durable[1:3] {
		r.mustChange(t, http.MethodDelete, "durable", id)
	}
	r.mustChange(t, http.MethodPost, "durable", "after-recovery")
	r.readAll(t.Context(), "after the run")

	// A restart on the same data directory loads what was acknowledged.
	// The fleet, silent since the clients stopped, may expire meanwhile:
	// only the durable instances are sure to outlive it. The client's idle
	// connections go first: the drain waits up to 5 s for a connection
	// that was opened but never carried a request.
	transport.CloseIdleConnections()
	first.signal(syscall.SIGTERM)
	if code := first.wait(15 * time.Second); code != 0 {
		t.Errorf("saga exited with status %d after SIGTERM", code)
	}
	r.stopped = time.Now()
	r.saga.set(startSaga(t, env, args...))
	r.readAll(t.Context(), "after the restart")
	r.probeOnce(t.Context())

	r.judge(t, events.all())
	checkDiskFullLogs(t, first.logs.String())
}

// mountTmpfs mounts a tmpfs of size (such as "16m") on a new temporary
// directory, and unmounts it when the test ends: lazily if something still
// holds it open.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		err := syscall.Unmount(dir, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		if err != nil {
			t.Errorf("unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a new file at path until its file system is full, and
// returns how many bytes it wrote.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var written int64
	for _, chunk := range [][]byte{make([]byte, 1<<20), make([]byte, 4<<10)} {
		for {
			n, err := f.Write(chunk)
			written += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("write the filler: %v", err)
			}
		}
	}
	return written
}

// diskFullRun is one run of the test and its recorded history.
type diskFullRun struct {
	saga   sagaRef // the saga the clients talk to: replaced by the restart
	client *http.Client
	fleet  []string

	// Taken as the run goes: just before and after the filler is written;
	// just before and after the filler is deleted; when the clients
	// stopped; once the first saga has exited.
	filling, filled time.Time
	freeing, freed  time.Time
	silenced        time.Time
	stopped         time.Time
	refused         chan struct{} // closed once saga has refused a change
	refusedOnce     sync.Once

	mu        sync.Mutex
	refusedAt time.Time // the earliest answer to a change that saga refused
	changes   []diskFullChange
	reads     []diskFullRead
	health    []diskFullHealth
}

// sagaRef holds the running saga for the clients' goroutines.
type sagaRef struct {
	mu sync.Mutex
	p  *sagaProcess
}

func (s *sagaRef) set(p *sagaProcess) { s.mu.Lock(); s.p = p; s.mu.Unlock() }

func (s *sagaRef) url(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.url(path)
}

// diskFullChange is one recorded register (POST), heartbeat (PUT) or
// deregister (DELETE).
type diskFullChange struct {
	method      string
	service, id string
	sent, got   time.Time
	status      int
	code        string // the error code of an error answer
	err         error
}

func (c diskFullChange) String() string {
	what := map[string]string{http.MethodPost: "register", http.MethodPut: "heartbeat", http.MethodDelete: "deregister"}[c.method]
	return what + " " + c.service + "/" + c.id
}

// ok reports whether the change succeeded with its usual status.
func (c diskFullChange) ok() bool {
	want := map[string]int{http.MethodPost: http.StatusCreated, http.MethodPut: http.StatusOK, http.MethodDelete: http.StatusNoContent}[c.method]
	return c.err == nil && c.status == want
}

// unavailable reports whether saga refused the change as SPEC §2 says.
func (c diskFullChange) unavailable() bool {
	return c.err == nil && c.status == http.StatusServiceUnavailable && c.code == "unavailable"
}

// diskFullRead is one recorded lookup (GET /api/v1/services/{service}?status=any)
// or catalogue (GET /api/v1/services, service "").
type diskFullRead struct {
	reader    string
	service   string
	sent, got time.Time
	status    int
	stale     string // the X-Saga-Stale header
	index     uint64
	ids       []string       // a lookup's instances
	counts    map[string]int // the catalogue's instances by service
	err       error
}

func (rd diskFullRead) what() string {
	if rd.service == "" {
		return "catalogue"
	}
	return rd.service
}

// diskFullHealth is one recorded GET /api/v1/health.
type diskFullHealth struct {
	sent, got time.Time
	status    int
	health    string
	err       error
}

// change sends one change for service/id and records its answer, unless
// ctx ended meanwhile. The first 503 sets refusedAt.
func (r *diskFullRun) change(ctx context.Context, method, service, id string) diskFullChange {
	path := "/api/v1/services/" + service + "/instances"
	var body any
	switch method {
	case http.MethodPost:
		ttl := diskFullDurableTTL
		if service == "fleet" {
			ttl = int(diskFullTTL / time.Second)
		}
		body = map[string]any{"id": id, "address": "10.0.0.1", "port": 8080, "ttl_seconds": ttl}
	case http.MethodPut:
		path += "/" + id + "/heartbeat"
	default:
		path += "/" + id
	}
	c := diskFullChange{method: method, service: service, id: id, sent: time.Now()}
	var data []byte
	c.status, _, data, c.err = r.send(ctx, 5*time.Second, method, r.saga.url(path), body)
	c.got = time.Now()
	if ctx.Err() != nil {
		return c
	}
	if c.err == nil && c.status >= 400 {
		var e e2eErrorBody
		_ = json.Unmarshal(data, &e)
		c.code = e.Error.Code
	}
	r.mu.Lock()
	r.changes = append(r.changes, c)
	if c.status == http.StatusServiceUnavailable && (r.refusedAt.IsZero() || c.got.Before(r.refusedAt)) {
		r.refusedAt = c.got
	}
	r.mu.Unlock()
	if c.status == http.StatusServiceUnavailable {
		r.refusedOnce.Do(func() { close(r.refused) })
	}
	return c
}

// firstRefusal is the earliest answer so far to a change that saga refused.
func (r *diskFullRun) firstRefusal() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusedAt
}

// mustChange makes a change that must succeed, outside the disk's trouble.
func (r *diskFullRun) mustChange(t *testing.T, method, service, id string) {
	t.Helper()
	if c := r.change(t.Context(), method, service, id); !c.ok() {
		t.Fatalf("%s: %d %q, %v", c, c.status, c.code, c.err)
	}
}

// heartbeat renews fleet/id every second, the first time after offset,
// until ctx ends. Like pkg/client's KeepAlive it registers again when saga
// answers 404 (which judge counts as a failure).
func (r *diskFullRun) heartbeat(ctx context.Context, id string, offset time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(offset):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if c := r.change(ctx, http.MethodPut, "fleet", id); c.status == http.StatusNotFound {
			r.change(ctx, http.MethodPost, "fleet", id)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// write registers new durable instances, w<w>-0000, w<w>-0001, …, until
// ctx ends.
func (r *diskFullRun) write(ctx context.Context, w int) {
	for n := 0; ; n++ {
		r.change(ctx, http.MethodPost, "durable", fmt.Sprintf("w%d-%04d", w, n))
		select {
		case <-ctx.Done():
			return
		case <-time.After(diskFullWritePause):
		}
	}
}

// read looks up both services and the catalogue every 100 ms until ctx ends.
func (r *diskFullRun) read(ctx context.Context, reader string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		r.readAll(ctx, reader)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readAll looks up both services and the catalogue once, recording each
// answer unless ctx ended meanwhile.
func (r *diskFullRun) readAll(ctx context.Context, reader string) {
	for _, service := range []string{"fleet", "durable", ""} {
		rd := diskFullRead{reader: reader, service: service, sent: time.Now()}
		path := "/api/v1/services"
		if service != "" {
			path += "/" + service + "?status=any"
		}
		var header http.Header
		var data []byte
		rd.status, header, data, rd.err = r.send(ctx, 5*time.Second, http.MethodGet, r.saga.url(path), nil)
		rd.got = time.Now()
		if ctx.Err() != nil {
			return
		}
		if rd.err == nil && rd.status == http.StatusOK {
			if service != "" {
				var body e2eLookup
				if rd.err = json.Unmarshal(data, &body); rd.err == nil {
					rd.index, rd.ids = body.Index, body.ids()
				}
			} else {
				var body struct {
					Index    uint64 `json:"index"`
					Services []struct {
						Name      string `json:"name"`
						Instances int    `json:"instances"`
					} `json:"services"`
				}
				if rd.err = json.Unmarshal(data, &body); rd.err == nil {
					rd.index, rd.counts = body.Index, map[string]int{}
					for _, s := range body.Services {
						rd.counts[s.Name] = s.Instances
					}
				}
			}
		}
		if header != nil {
			rd.stale = header.Get("X-Saga-Stale")
		}
		r.mu.Lock()
		r.reads = append(r.reads, rd)
		r.mu.Unlock()
	}
}

// probe asks for the health report every 200 ms until ctx ends.
func (r *diskFullRun) probe(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		r.probeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *diskFullRun) probeOnce(ctx context.Context) {
	h := diskFullHealth{sent: time.Now()}
	var data []byte
	h.status, _, data, h.err = r.send(ctx, 5*time.Second, http.MethodGet, r.saga.url("/api/v1/health"), nil)
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
}

// send makes one request with a JSON body (when not nil) and returns the
// answer's status, headers and body.
func (r *diskFullRun) send(ctx context.Context, timeout time.Duration, method, url string, body any) (int, http.Header, []byte, error) {
	return sendJSON(ctx, r.client, timeout, method, url, body)
}

// The phases of the run, as the history is judged.

// before: answered before the filler was written.
func (r *diskFullRun) before(got time.Time) bool { return got.Before(r.filling) }

// refusing: sent once saga had refused a change, answered before the
// filler was deleted: every change must be refused.
func (r *diskFullRun) refusing(sent, got time.Time) bool {
	return !sent.Before(r.refusedAt) && got.Before(r.freeing)
}

// full: sent once saga has had time to notice, answered before the filler
// was deleted: reads are stale and saga degraded.
func (r *diskFullRun) full(sent, got time.Time) bool {
	return !sent.Before(r.refusedAt.Add(diskFullDetect)) && got.Before(r.freeing)
}

// settled: sent once saga has had time to take writes again.
func (r *diskFullRun) settled(sent time.Time) bool {
	return !sent.Before(r.freed.Add(diskFullSettle))
}

// rel is a time relative to the moment the disk was filled, for messages.
func (r *diskFullRun) rel(at time.Time) string {
	return fmt.Sprintf("%+.2fs", at.Sub(r.filling).Seconds())
}

// judge checks the recorded history, and the event stream of durable,
// against the guarantees.
func (r *diskFullRun) judge(t *testing.T, events []e2eEvent) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("the disk filled at %s, was full from %s (first refusal), freed at %s; the first saga stopped at %s (times relative to the fill)",
		r.filling.UTC().Format(time.RFC3339Nano), r.rel(r.refusedAt), r.rel(r.freeing), r.rel(r.stopped))

	// Changes.
	failed := &outageComplaints{what: "change answered neither its success status nor 503 unavailable (another 5xx, a lost connection, …)"}
	forgotten := &outageComplaints{what: "heartbeat answered 404: saga forgot (expired) a fleet instance"}
	notRefused := &outageComplaints{what: "change sent after saga's first refusal, answered before space was freed, not refused with 503 unavailable"}
	notTaken := &outageComplaints{what: fmt.Sprintf("change sent %s or more after space was freed did not succeed", diskFullSettle)}
	acked := map[string]time.Time{}                                                // durable id → when its registration was acknowledged
	refused := map[string]time.Time{}                                              // durable id → when its registration was refused
	deregistered := map[string]diskFullChange{}                                    // durable id → its acknowledged deregistration
	renewed := map[string]bool{}                                                   // fleet ids renewed after space was freed
	var firstTaken time.Time                                                       // the first change acknowledged after space was freed
	counts := map[string]map[string]int{"before": {}, "refusing": {}, "after": {}} // phase → outcome → count
	for _, c := range r.changes {
		where := fmt.Sprintf("%s sent %s answered %s", c, r.rel(c.sent), r.rel(c.got))
		switch {
		case c.method == http.MethodPut && c.err == nil && c.status == http.StatusNotFound:
			forgotten.add("%s", where)
		case !c.ok() && !c.unavailable():
			failed.add("%s: %d %q, %v", where, c.status, c.code, c.err)
		}
		outcome := "ok"
		if !c.ok() {
			outcome = fmt.Sprint(c.status, " ", c.code)
		}
		switch {
		case r.refusing(c.sent, c.got):
			counts["refusing"][outcome]++
			if !c.unavailable() {
				notRefused.add("%s: %d %q, %v", where, c.status, c.code, c.err)
			}
		case c.got.Before(r.refusedAt):
			counts["before"][outcome]++
		default:
			counts["after"][outcome]++
		}
		if r.settled(c.sent) && !c.ok() {
			notTaken.add("%s: %d %q, %v", where, c.status, c.code, c.err)
		}
		if c.ok() && !c.sent.Before(r.freed) && (firstTaken.IsZero() || c.got.Before(firstTaken)) {
			firstTaken = c.got
		}
		switch {
		case c.service != "durable":
			if c.method == http.MethodPut && c.ok() && !c.sent.Before(r.freed) {
				renewed[c.id] = true
			}
		case c.method == http.MethodPost && c.ok():
			acked[c.id] = c.got
		case c.method == http.MethodPost && c.status == http.StatusServiceUnavailable:
			refused[c.id] = c.got
		case c.method == http.MethodDelete && c.ok():
			deregistered[c.id] = c
		}
	}
	t.Logf("changes (phase: outcome → count): before the first refusal %v; while refusing %v; after %v", counts["before"], counts["refusing"], counts["after"])
	t.Logf("durable registrations: %d acknowledged, %d refused; the first change acknowledged after space was freed answered %s after", len(acked), len(refused), firstTaken.Sub(r.freed).Round(time.Millisecond))
	if counts["refusing"]["503 unavailable"] == 0 {
		t.Errorf("no change was refused while the disk was full")
	}
	if len(refused) == 0 {
		t.Errorf("no registration was refused while the disk was full")
	}

	// Reads. An id must be shown once its registration was acknowledged
	// before the read was sent, unless a deregistration of it was sent
	// before the read was answered; it must not be shown if its
	// registration was refused, or it was deregistered before the read.
	readFailed := &outageComplaints{what: "read failed (an error, or a status other than 200)"}
	fleetShort := &outageComplaints{what: "read lacked fleet instances, which heartbeat throughout"}
	durableShort := &outageComplaints{what: "read lacked durable instances acknowledged before it was sent"}
	ghosts := &outageComplaints{what: "read showed an instance whose registration was refused, or that was deregistered before it was sent"}
	staleBefore := &outageComplaints{what: "X-Saga-Stale set before the disk was filled"}
	notStale := &outageComplaints{what: fmt.Sprintf("read sent %s or more after saga's first refusal, before space was freed, without X-Saga-Stale: true", diskFullDetect)}
	staleAfter := &outageComplaints{what: fmt.Sprintf("X-Saga-Stale still set on a read sent %s or more after space was freed", diskFullSettle)}
	var firstFresh time.Time // the first read without the stale mark sent after space was freed
	stale, total := 0, 0
	var good []diskFullRead
	for _, rd := range r.reads {
		where := fmt.Sprintf("%s: %s sent %s answered %s", rd.reader, rd.what(), r.rel(rd.sent), r.rel(rd.got))
		if rd.err != nil || rd.status != http.StatusOK {
			readFailed.add("%s: %d, %v", where, rd.status, rd.err)
			continue
		}
		good = append(good, rd)
		var want []string
		for id, at := range acked {
			if at.Before(rd.sent) {
				if d, ok := deregistered[id]; !ok || !d.sent.Before(rd.got) {
					want = append(want, id)
				}
			}
		}
		slices.Sort(want)
		gone := func(id string) bool {
			if _, ok := refused[id]; ok {
				return true
			}
			d, ok := deregistered[id]
			return ok && d.got.Before(rd.sent)
		}
		// Once its clients stopped, the fleet may expire.
		fleetDue := rd.sent.Before(r.silenced)
		switch rd.service {
		case "fleet":
			if !fleetDue {
				break
			}
			if missing := diskFullMissing(r.fleet, rd.ids); len(missing) > 0 {
				fleetShort.add("%s: %d of %d (stale %q), missing %s", where, len(rd.ids), len(r.fleet), rd.stale, diskFullAbbrev(missing))
			}
		case "durable":
			if missing := diskFullMissing(want, rd.ids); len(missing) > 0 {
				durableShort.add("%s (index %d, stale %q): %d instances, missing %d: %s", where, rd.index, rd.stale, len(rd.ids), len(missing), diskFullAbbrev(missing))
			}
			var shown []string
			for _, id := range rd.ids {
				if gone(id) {
					shown = append(shown, id)
				}
			}
			if len(shown) > 0 {
				ghosts.add("%s (index %d): %s", where, rd.index, diskFullAbbrev(shown))
			}
		default:
			if n := rd.counts["fleet"]; n < len(r.fleet) && fleetDue {
				fleetShort.add("%s: fleet has %d instances, want %d", where, n, len(r.fleet))
			}
			if n := rd.counts["durable"]; n < len(want) {
				durableShort.add("%s: durable has %d instances, want at least %d", where, n, len(want))
			}
		}
		switch {
		case r.before(rd.got) && rd.stale != "":
			staleBefore.add("%s: X-Saga-Stale %q", where, rd.stale)
		case r.full(rd.sent, rd.got):
			total++
			if rd.stale == "true" {
				stale++
			} else {
				notStale.add("%s: X-Saga-Stale %q", where, rd.stale)
			}
		case r.settled(rd.sent) && rd.stale != "":
			staleAfter.add("%s: X-Saga-Stale %q", where, rd.stale)
		}
		if rd.stale == "" && !rd.sent.Before(r.freed) && (firstFresh.IsZero() || rd.got.Before(firstFresh)) {
			firstFresh = rd.got
		}
	}
	t.Logf("%d reads; %d of the %d sent while the disk was full were marked stale; the first read not marked stale after space was freed answered %s after",
		len(r.reads), stale, total, firstFresh.Sub(r.freed).Round(time.Millisecond))
	if total == 0 {
		t.Errorf("no read was sent while the disk was full")
	}
	backwards := &outageComplaints{what: "an index went backwards: a read answered a lower index than a read answered before it was sent"}
	for _, service := range []string{"fleet", "durable", ""} {
		var of []diskFullRead
		for _, rd := range good {
			if rd.service == service {
				of = append(of, rd)
			}
		}
		r.checkIndexes(of, backwards)
	}

	// Health.
	healthWrong := &outageComplaints{what: "GET /api/v1/health said the wrong thing"}
	var firstHealthy time.Time
	for _, h := range r.health {
		where := fmt.Sprintf("sent %s answered %s", r.rel(h.sent), r.rel(h.got))
		var want string
		var code int
		switch {
		case r.before(h.got), r.settled(h.sent):
			want, code = "healthy", http.StatusOK
		case r.full(h.sent, h.got):
			want, code = "degraded", http.StatusServiceUnavailable
		}
		if h.err == nil && h.health == "healthy" && !h.sent.Before(r.freed) && (firstHealthy.IsZero() || h.got.Before(firstHealthy)) {
			firstHealthy = h.got
		}
		if want != "" && (h.err != nil || h.status != code || h.health != want) {
			healthWrong.add("%s: %d %q, %v; want %d %q", where, h.status, h.health, h.err, code, want)
		}
	}
	t.Logf("health healthy again %s after space was freed", firstHealthy.Sub(r.freed).Round(time.Millisecond))

	// Every fleet instance renewed after the disk had room again.
	var notRenewed []string
	for _, id := range r.fleet {
		if !renewed[id] {
			notRenewed = append(notRenewed, id)
		}
	}
	if len(notRenewed) > 0 {
		t.Errorf("no heartbeat succeeded after space was freed for %d of %d fleet instances: %s", len(notRenewed), len(r.fleet), diskFullAbbrev(notRenewed))
	}

	// The event stream of durable: every acknowledged registration, no
	// refused one, indexes in order.
	eventWrong := &outageComplaints{what: "event stream of durable wrong"}
	announced := map[string]bool{}
	var last uint64
	for _, ev := range events {
		if ev.Data.Index <= last {
			eventWrong.add("%s %s at index %d after index %d", ev.Type, ev.Data.Instance.ID, ev.Data.Index, last)
		}
		last = ev.Data.Index
		if ev.Type == "registered" {
			announced[ev.Data.Instance.ID] = true
		}
		if _, ok := refused[ev.Data.Instance.ID]; ok {
			eventWrong.add("%s %s at index %d: its registration was refused", ev.Type, ev.Data.Instance.ID, ev.Data.Index)
		}
	}
	var unannounced []string
	for id := range acked {
		if !announced[id] {
			unannounced = append(unannounced, id)
		}
	}
	if len(unannounced) > 0 {
		slices.Sort(unannounced)
		eventWrong.add("no registered event for %d acknowledged registrations: %s", len(unannounced), diskFullAbbrev(unannounced))
	}

	for _, c := range []*outageComplaints{failed, forgotten, notRefused, notTaken, readFailed, fleetShort, durableShort, ghosts, staleBefore, notStale, staleAfter, backwards, healthWrong, eventWrong} {
		c.report(t)
	}
}

// checkIndexes reports every read of reads (one service, or the catalogue)
// that answered a lower index than a read answered before it was sent.
func (r *diskFullRun) checkIndexes(reads []diskFullRead, c *outageComplaints) {
	byGot := slices.Clone(reads)
	slices.SortFunc(byGot, func(a, b diskFullRead) int { return a.got.Compare(b.got) })
	bySent := slices.Clone(reads)
	slices.SortFunc(bySent, func(a, b diskFullRead) int { return a.sent.Compare(b.sent) })
	var high *diskFullRead // the read with the highest index answered so far
	next := 0
	for _, rd := range bySent {
		for ; next < len(byGot) && byGot[next].got.Before(rd.sent); next++ {
			if high == nil || byGot[next].index > high.index {
				high = &byGot[next]
			}
		}
		if high != nil && rd.index < high.index {
			c.add("%s: %s sent %s answered index %d; %s answered %d at %s", rd.reader, rd.what(), r.rel(rd.sent), rd.index, high.reader, high.index, r.rel(high.got))
		}
	}
}

// checkDiskFullLogs checks what the first saga logged: the full disk once,
// as an error naming it, the recovery once, and no panic.
func checkDiskFullLogs(t *testing.T, logs string) {
	t.Helper()
	var failures, recoveries, errorLines []string
	for line := range strings.Lines(logs) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch {
		case strings.HasPrefix(rec.Msg, "writing the data file failed"):
			failures = append(failures, line)
		case strings.HasPrefix(rec.Msg, "writing the data file works again"):
			recoveries = append(recoveries, line)
		}
		if rec.Level == "ERROR" {
			errorLines = append(errorLines, line)
		}
	}
	if len(failures) != 1 || !strings.Contains(failures[0], syscall.ENOSPC.Error()) {
		t.Errorf("want one log line about the failed write, naming %q; got %d:\n%s", syscall.ENOSPC.Error(), len(failures), strings.Join(failures, ""))
	}
	if len(recoveries) != 1 {
		t.Errorf("want one log line about the recovery, got %d:\n%s", len(recoveries), strings.Join(recoveries, ""))
	}
	if len(errorLines) != 1 {
		t.Errorf("want one error line (the failed write), got %d:\n%s", len(errorLines), strings.Join(errorLines, ""))
	}
	if strings.Contains(logs, "panic") {
		t.Errorf("saga logged a panic")
	}
}

// diskFullMissing lists the ids of want (sorted) that got lacks.
func diskFullMissing(want, got []string) []string {
	have := make(map[string]bool, len(got))
	for _, id := range got {
		have[id] = true
	}
	var missing []string
	for _, id := range want {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// diskFullAbbrev shows the first few ids of a list, and how many follow.
func diskFullAbbrev(ids []string) string {
	const first = 8
	if len(ids) <= first {
		return "[" + strings.Join(ids, " ") + "]"
	}
	return fmt.Sprintf("[%s … and %d more]", strings.Join(ids[:first], " "), len(ids)-first)
}
