package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Heartbeats at full rate through two sagas on one Redis never show an
// instance past its deadline and never hide a live one for more than the
// SPEC's second (SPEC §1–2). The Redis store shares round trips between
// heartbeats and publishes a plain heartbeat to the other sagas only when
// it moves the deadline announceStep past the one last published (or
// earlier), so a saga's view may hold an older, earlier deadline than the
// store: this run holds that to the promise through real processes.
//
// The run. Two `saga serve` on one redis-server. 24 instances in two
// services, each with a TTL of hbTTL: a third heartbeated only through
// saga A, a third only through B, a third through both at once (so two
// sagas race on one deadline). Three clients per saga each loop over the
// instances they own and heartbeat them one after the other with no
// pause; a client that gets 404 registers the instance again, as a real
// client would. Nine instances stop being heartbeated at random moments
// (so they expire mid-run), five are registered at random moments after
// the start; the rest are heartbeated until the end of the load and
// then all expire. Meanwhile two readers per saga look up both services
// (?status=any) without pause, until every instance must be gone.
//
// Every request is recorded with the moment it was sent and the moment
// its whole answer was read, on the test's monotonic clock; Redis and the
// sagas run on the same machine and read the same wall clock, which the
// sagas use for `now` and for deadlines. A write is acknowledged (2xx),
// refused (4xx: a heartbeat answered 404 did nothing), or uncertain (no
// answer, or 5xx: it may have been made, at any later moment).
//
// The model. A write w (registration or heartbeat) that is made sets the
// instance's deadline in the store to now + TTL, where now is its saga's
// clock while handling it, so sent(w) ≤ now ≤ recv(w) (an uncertain write:
// now ≥ sent(w), with no upper bound). Writes of one instance may be made
// out of order when two sagas heartbeat it, so the store's deadline is that
// of the write it made last. Nothing else sets a deadline in a run without
// faults (the grace of self-preservation follows only a store outage, which
// the run fails on as "stale"/"store-down"). A saga answers a lookup at
// some moment in [ls, le], its send and receive times.
//
//   - past-deadline (a): a lookup may list an instance only if some made
//     or uncertain write of it sent before le could have set a deadline
//     after ls: it is a violation when every such w has
//     recv(w) + TTL + hbSlack ≤ ls (uncertain writes have no bound).
//   - expires-passed (a): a listed instance's own expires_at is after the
//     wall-clock moment the lookup was sent (less hbSlack): the saga
//     compares it with its now, which is later.
//   - hidden (b): "every saga agrees with the store within 1 s" read as:
//     a saga's answer at t matches the store's state at some moment within
//     agreeWithin of t — it may learn a change up to 1 s late, and may drop
//     an instance up to 1 s before the deadline the store holds (its view
//     may hold a deadline up to announceStep earlier). So a lookup must list
//     an instance that the store surely held live throughout
//     [ls − 1 s, le + 1 s]: some acknowledged write h with
//     recv(h) ≤ ls − 1 s, and every write that may have been made after h
//     (every write sent before le that was not answered before h was sent)
//     sent at or after le + 1 s + hbSlack − TTL, so the store's deadline
//     stayed past le + 1 s from h on.
//   - expired-early: the same with no lag for the store itself: a
//     heartbeat refused with 404 while the store surely held its instance
//     live throughout [sent, recv] is a deadline passed too soon.
//   - gone (c): once the last write of an instance was answered, every
//     lookup sent TTL + 1 s later lacks it (implied by past-deadline; what
//     is checked here is that the run saw it): each instance was listed by
//     some lookup on each saga, and each saga answered lookups sent after
//     that moment. Besides, per saga, the lookups that hidden requires to
//     list an instance must be at least half of those made while the store
//     surely held it live, so the run cannot pass by requiring nothing.
//   - request-failed, stale, store-down, phantom: the run injects no
//     faults, so every write is acknowledged (or refused 404), every lookup
//     answers 200 without X-Saga-Stale, neither saga logs Redis as
//     unreachable, and no lookup lists an id that no client wrote.
//
// A machine stall of a client or of the test process only widens
// [sent, recv], which every rule allows for; a saga or Redis that stalls
// for a second is what the SPEC's window is about.

var heartbeatDuration = flag.Duration("heartbeat.duration", 0,
	"how long the heartbeat agreement run heartbeats; 0 keeps it short enough for make test")

const (
	hbTTL        = 3 * time.Second // every instance's TTL
	hbShortLoad  = 11 * time.Second
	hbPerService = 12 // instances per service
	hbClients    = 3  // heartbeating clients per saga
	hbReaders    = 2  // readers per saga
	// hbSlack absorbs the clock's millisecond rounding of deadlines and
	// the scheduling between a saga reading its clock and answering.
	hbSlack = 50 * time.Millisecond
	// hbTail is how long the readers go on past the moment every instance
	// must be gone from every saga.
	hbTail           = 500 * time.Millisecond
	hbRequestTimeout = 20 * time.Second
	hbShown          = 12 // violations shown in a failure
	// hbNever is the latest possible moment of an uncertain write's now.
	hbNever = time.Duration(1 << 62)
)

var hbServices = []string{"pulse", "beat"}

func TestHeartbeatsAtFullRateAgreeOnDeadlines(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sagas := []*sagaProcess{startRedisSaga(t, srv.URL()), startRedisSaga(t, srv.URL())}
	load := hbShortLoad
	if *heartbeatDuration > 0 {
		load = *heartbeatDuration
	}
	seed := uint64(time.Now().UnixNano())
	transport := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 32, IdleConnTimeout: time.Minute}
	t.Cleanup(transport.CloseIdleConnections)
	r := &hbRun{
		t: t, sagas: sagas, names: []string{"A", "B"}, load: load,
		client: &http.Client{Transport: transport, Timeout: hbRequestTimeout},
		insts:  hbPlan(load, rand.New(rand.NewPCG(seed, 1))),
		index:  map[string]int{},
	}
	for i, in := range r.insts {
		r.index[in.service+"/"+in.id] = i
	}
	r.run()

	c := r.check()
	c.published = redisPublishes(t, srv.Client())
	for i, p := range sagas {
		if strings.Contains(p.logs.String(), "redis unreachable") {
			c.add(violation{Rule: "store-down", At: time.Now(), Saga: r.names[i],
				Want: "Redis reachable throughout (no faults are injected)", Got: "the saga logged Redis as unreachable (see its output)"})
		}
	}
	t.Logf("seed %d; %s", seed, c.summary())
	for _, complaint := range c.thin() {
		t.Error(complaint)
	}
	if len(c.vs) > 0 {
		slices.SortStableFunc(c.vs, func(a, b violation) int { return a.At.Compare(b.At) })
		t.Errorf("heartbeats at full rate break the deadline model (heartbeat_agreement_test.go); %s",
			describeViolations(&history{Start: r.start}, c.vs, hbShown))
	}
}

// hbInstance is one instance of the run and its plan.
type hbInstance struct {
	service, id string
	via         []int // the sagas its heartbeats go through; its registrations go through via[0]
	owner       int   // which client of each saga in via heartbeats it
	// start is when it is first registered and stop when its heartbeats
	// stop, as offsets from the start of the run.
	start, stop time.Duration
	once        sync.Once
	registered  chan struct{} // closed once its first registration is acknowledged
}

// hbPlan lays out the instances: which sagas heartbeat each, which stop
// early, which start late, mixed over both services and every client.
func hbPlan(load time.Duration, rng *rand.Rand) []*hbInstance {
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var out []*hbInstance
	for j := range len(hbServices) * hbPerService {
		in := &hbInstance{
			service: hbServices[j%len(hbServices)], id: fmt.Sprintf("i%02d", j),
			via: [][]int{{0}, {1}, {0, 1}}[j%3], owner: (j / 2) % hbClients,
			stop: load, registered: make(chan struct{}),
		}
		if j%5 == 2 {
			in.start = between(load/10, load*6/10)
		}
		if j%9 >= 3 && j%9 <= 5 {
			// Heartbeated for two seconds at least, and stopped in time
			// for the run to see it gone well before the load ends.
			if lo, hi := max(load*15/100, in.start+2*time.Second), load*85/100; lo < hi {
				in.stop = between(lo, hi)
			}
		}
		out = append(out, in)
	}
	return out
}

// hbWrite is one recorded registration or heartbeat.
type hbWrite struct {
	inst       int
	saga       int
	register   bool
	sent, recv time.Duration // offsets from the start of the run
	status     int
	err        string
}

func (w *hbWrite) acked() bool {
	return w.err == "" && (w.status == http.StatusOK || w.status == http.StatusCreated)
}

func (w *hbWrite) refused() bool { return w.err == "" && w.status >= 400 && w.status < 500 }

func (w *hbWrite) kind() string {
	if w.register {
		return "registration"
	}
	return "heartbeat"
}

// hbLookup is one recorded lookup.
type hbLookup struct {
	saga, service int
	sent, recv    time.Duration
	status        int
	err           string
	stale         bool
	listed        []hbListed
}

type hbListed struct {
	inst    int    // -1 for an id nobody wrote
	id      string // its id, kept for the report
	expires time.Time
}

type hbRun struct {
	t      *testing.T
	sagas  []*sagaProcess
	names  []string
	load   time.Duration
	client *http.Client
	insts  []*hbInstance
	index  map[string]int // service/id → insts
	start  time.Time

	mu      sync.Mutex
	writes  []hbWrite
	lookups []hbLookup
}

func (r *hbRun) at(d time.Duration) time.Time { return r.start.Add(d) }

func (r *hbRun) run() {
	r.start = time.Now()
	done := make(chan struct{})
	var writers, readers sync.WaitGroup
	for saga := range r.sagas {
		for c := range hbClients {
			var mine []int
			for i, in := range r.insts {
				if in.owner == c && slices.Contains(in.via, saga) {
					mine = append(mine, i)
				}
			}
			writers.Go(func() { r.heartbeat(saga, mine) })
		}
		for n := range hbReaders {
			readers.Go(func() { r.read(saga, n, done) })
		}
	}
	writers.Wait()
	var last time.Duration
	for _, w := range r.writes {
		last = max(last, w.recv)
	}
	time.Sleep(time.Until(r.at(last + hbTTL + agreeWithin + hbTail)))
	close(done)
	readers.Wait()
}

// heartbeat is one client: it heartbeats its instances in turn, as fast
// as the sagas answer, registering each when it is due.
func (r *hbRun) heartbeat(saga int, mine []int) {
	var log []hbWrite
	defer func() {
		r.mu.Lock()
		r.writes = append(r.writes, log...)
		r.mu.Unlock()
	}()
	for time.Since(r.start) < r.load {
		busy := false
		for _, i := range mine {
			in := r.insts[i]
			if now := time.Since(r.start); now < in.start || now >= in.stop || now >= r.load {
				continue
			}
			busy = true
			select {
			case <-in.registered:
			default:
				if in.via[0] == saga { // the registrar; the other saga's client waits for it
					w := r.write(saga, i, true)
					log = append(log, w)
					if w.acked() {
						in.once.Do(func() { close(in.registered) })
					}
				}
				continue
			}
			w := r.write(saga, i, false)
			log = append(log, w)
			if w.status == http.StatusNotFound {
				log = append(log, r.write(saga, i, true)) // expired: register again
			}
		}
		if !busy {
			time.Sleep(2 * time.Millisecond) // nothing due yet
		}
	}
}

// write sends one registration or heartbeat of instance i through saga.
func (r *hbRun) write(saga, i int, register bool) hbWrite {
	in := r.insts[i]
	base := r.sagas[saga].url("/api/v1/services/" + in.service + "/instances")
	method, u, body := http.MethodPut, base+"/"+in.id+"/heartbeat", any(nil)
	if register {
		method, u = http.MethodPost, base
		body = map[string]any{"id": in.id, "address": "10.0.0.1", "port": 8080, "ttl_seconds": int(hbTTL / time.Second)}
	}
	w := hbWrite{inst: i, saga: saga, register: register}
	sent := time.Now()
	status, _, _, err := sendJSON(r.t.Context(), r.client, hbRequestTimeout, method, u, body)
	w.sent, w.recv = sent.Sub(r.start), time.Since(r.start)
	w.status = status
	if err != nil {
		w.err = err.Error()
	}
	return w
}

// read looks up the services in turn until done, and then each once more,
// so that every saga answers for every service after every instance must
// be gone, however long a lookup took.
func (r *hbRun) read(saga, n int, done <-chan struct{}) {
	var log []hbLookup
	defer func() {
		r.mu.Lock()
		r.lookups = append(r.lookups, log...)
		r.mu.Unlock()
	}()
	for k := n; ; k++ {
		select {
		case <-done:
			for service := range hbServices {
				log = append(log, r.lookup(saga, service))
			}
			return
		default:
		}
		log = append(log, r.lookup(saga, k%len(hbServices)))
	}
}

func (r *hbRun) lookup(saga, service int) hbLookup {
	l := hbLookup{saga: saga, service: service}
	sent := time.Now()
	status, header, data, err := sendJSON(r.t.Context(), r.client, hbRequestTimeout, http.MethodGet,
		r.sagas[saga].url("/api/v1/services/"+hbServices[service]+"?status=any"), nil)
	l.sent, l.recv = sent.Sub(r.start), time.Since(r.start)
	l.status = status
	if err != nil {
		l.err = err.Error()
		return l
	}
	l.stale = header.Get("X-Saga-Stale") == "true"
	if status != http.StatusOK {
		return l
	}
	var body struct {
		Instances []struct {
			ID        string    `json:"id"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		l.err = fmt.Sprintf("decode %.80q: %v", data, err)
		return l
	}
	for _, in := range body.Instances {
		i, ok := r.index[hbServices[service]+"/"+in.ID]
		if !ok {
			i = -1
		}
		l.listed = append(l.listed, hbListed{inst: i, id: in.ID, expires: in.ExpiresAt})
	}
	return l
}

// hbTimeline is one instance's writes that may have set its deadline
// (acknowledged or uncertain), ordered by when they were sent, with what
// the rules ask of them precomputed.
type hbTimeline struct {
	writes []*hbWrite
	sent   []time.Duration
	// reach[k] is the latest moment at which any of writes[:k+1] may have
	// read its now: its recv, or hbNever for an uncertain write.
	reach []time.Duration
	// ackedFrom[k] is the earliest recv of an acknowledged write among
	// writes[k:], or hbNever.
	ackedFrom []time.Duration
}

func newTimeline(writes []*hbWrite) *hbTimeline {
	slices.SortFunc(writes, func(a, b *hbWrite) int { return cmp.Compare(a.sent, b.sent) })
	tl := &hbTimeline{writes: writes, sent: make([]time.Duration, len(writes)),
		reach: make([]time.Duration, len(writes)), ackedFrom: make([]time.Duration, len(writes)+1)}
	for k, w := range writes {
		tl.sent[k] = w.sent
		reach := w.recv
		if !w.acked() {
			reach = hbNever
		}
		tl.reach[k] = reach
		if k > 0 {
			tl.reach[k] = max(reach, tl.reach[k-1])
		}
	}
	tl.ackedFrom[len(writes)] = hbNever
	for k := len(writes) - 1; k >= 0; k-- {
		tl.ackedFrom[k] = tl.ackedFrom[k+1]
		if writes[k].acked() {
			tl.ackedFrom[k] = min(tl.ackedFrom[k], writes[k].recv)
		}
	}
	return tl
}

// latestDeadline bounds the deadline that the writes sent by le may have
// set; ok is false when none was sent by then.
func (tl *hbTimeline) latestDeadline(le time.Duration) (deadline time.Duration, last *hbWrite, ok bool) {
	k := sort.Search(len(tl.sent), func(i int) bool { return tl.sent[i] > le })
	if k == 0 {
		return 0, nil, false
	}
	if tl.reach[k-1] >= hbNever {
		return hbNever, tl.writes[k-1], true
	}
	return tl.reach[k-1] + hbTTL, tl.writes[k-1], true
}

// surelyLive reports whether the store surely held the instance live
// throughout [from − lag, to + lag]: an acknowledged write h answered by
// from − lag, and every write that may have been made after h sent late
// enough that its deadline is past to + lag. It returns h.
func (tl *hbTimeline) surelyLive(from, to, lag time.Duration) *hbWrite {
	earliest := to + lag + hbSlack - hbTTL // the earliest send whose deadline is late enough
	floor := earliest
	if k := sort.Search(len(tl.sent), func(i int) bool { return tl.sent[i] >= earliest }); k > 0 {
		// writes[:k] set too early a deadline: h must be sent after all
		// of them were answered.
		if tl.reach[k-1] >= hbNever {
			return nil
		}
		floor = max(floor, tl.reach[k-1])
	}
	j := sort.Search(len(tl.sent), func(i int) bool { return tl.sent[i] >= floor })
	if tl.ackedFrom[j] > from-lag {
		return nil
	}
	for _, w := range tl.writes[j:] {
		if w.acked() && w.recv <= from-lag {
			return w
		}
	}
	return nil
}

// hbSagaCounts is what one saga's lookups showed.
type hbSagaCounts struct {
	lookups  int
	pairs    int // (lookup, instance) pairs while the store surely held the instance live
	required int // of those, pairs that hidden requires to be listed
	listed   int // of pairs, those listed
}

type hbCheck struct {
	r       *hbRun
	vs      []violation
	tls     []*hbTimeline
	refused []int // 404s per saga
	counts  []hbSagaCounts
	gone    int // (instance, saga) seen gone after their deadline
	// published is how many notices Redis published during the run (the
	// sagas' other notices are few): the share of heartbeats announced.
	published int64
}

func (c *hbCheck) add(v violation) { c.vs = append(c.vs, v) }

func (r *hbRun) name(i int) (service, id string) { return r.insts[i].service, r.insts[i].id }

func (r *hbRun) span(from, to time.Duration) string {
	return fmt.Sprintf("[%.3fs, %.3fs]", from.Seconds(), to.Seconds())
}

func (r *hbRun) describeWrite(w *hbWrite) string {
	if w == nil {
		return "none"
	}
	return fmt.Sprintf("%s via %s sent %.3fs answered %.3fs (%s)", w.kind(), r.names[w.saga], w.sent.Seconds(), w.recv.Seconds(), w.outcome())
}

func (w *hbWrite) outcome() string {
	if w.err != "" {
		return w.err
	}
	return fmt.Sprint(w.status)
}

// check holds the recorded run to the model (see the top of the file).
func (r *hbRun) check() *hbCheck {
	c := &hbCheck{r: r, refused: make([]int, len(r.sagas)), counts: make([]hbSagaCounts, len(r.sagas))}
	perInst := make([][]*hbWrite, len(r.insts))
	var refused []*hbWrite
	for k := range r.writes {
		w := &r.writes[k]
		service, id := r.name(w.inst)
		switch {
		case w.refused():
			refused = append(refused, w)
			c.refused[w.saga]++
			if w.register || w.status != http.StatusNotFound {
				c.add(violation{Rule: "request-failed", At: r.at(w.sent), Saga: r.names[w.saga], Service: service, ID: id,
					Want: "acknowledged, or 404 for a heartbeat", Got: r.describeWrite(w)})
			}
			continue
		case !w.acked():
			c.add(violation{Rule: "request-failed", At: r.at(w.sent), Saga: r.names[w.saga], Service: service, ID: id,
				Want: "acknowledged (no faults are injected)", Got: r.describeWrite(w)})
		}
		perInst[w.inst] = append(perInst[w.inst], w)
	}
	c.tls = make([]*hbTimeline, len(r.insts))
	for i := range r.insts {
		c.tls[i] = newTimeline(perInst[i])
	}

	// expired-early: a 404 while the store surely held the instance.
	for _, w := range refused {
		if w.register || w.status != http.StatusNotFound {
			continue
		}
		if h := c.tls[w.inst].surelyLive(w.sent, w.recv, 0); h != nil {
			service, id := r.name(w.inst)
			c.add(violation{Rule: "expired-early", At: r.at(w.sent), Saga: r.names[w.saga], Service: service, ID: id,
				Want: fmt.Sprintf("live: the store surely held it from %.3fs (%s) to past %.3fs (every write that may have followed was sent at %.3fs or later)",
					h.recv.Seconds(), r.describeWrite(h), w.recv.Seconds(), (w.recv + hbSlack - hbTTL).Seconds()),
				Got: fmt.Sprintf("heartbeat %s answered 404", r.span(w.sent, w.recv))})
		}
	}

	seen := make([][]bool, len(r.insts)) // per instance and saga: listed once
	for i := range seen {
		seen[i] = make([]bool, len(r.sagas))
	}
	for k := range r.lookups {
		c.lookup(&r.lookups[k], seen)
	}

	// gone: the run saw every instance listed, and answered lookups after
	// it had to be gone (past-deadline checked that they lack it).
	for i, tl := range c.tls {
		service, id := r.name(i)
		if len(tl.writes) == 0 {
			c.add(violation{Rule: "never-written", At: r.at(r.insts[i].start), Service: service, ID: id,
				Want: "registered and heartbeated", Got: "no write was acknowledged"})
			continue
		}
		goneBy := tl.reach[len(tl.reach)-1] + hbTTL + agreeWithin
		for saga := range r.sagas {
			if !seen[i][saga] {
				c.add(violation{Rule: "never-listed", At: r.at(r.insts[i].start), Saga: r.names[saga], Service: service, ID: id,
					Want: fmt.Sprintf("listed while live, from %.3fs to %.3fs", r.insts[i].start.Seconds(), r.insts[i].stop.Seconds()),
					Got:  "no lookup listed it"})
			}
			after := false
			for k := range r.lookups {
				l := &r.lookups[k]
				if l.saga == saga && hbServices[l.service] == service && l.status == http.StatusOK && l.sent >= goneBy {
					after = true
					break
				}
			}
			if after {
				c.gone++
			} else {
				c.add(violation{Rule: "never-seen-gone", At: r.at(goneBy), Saga: r.names[saga], Service: service, ID: id,
					Want: fmt.Sprintf("a lookup sent after %.3fs, when it must be gone", goneBy.Seconds()),
					Got:  "none: the readers stopped too early"})
			}
		}
	}
	return c
}

// lookup checks one lookup against every instance of its service.
func (c *hbCheck) lookup(l *hbLookup, seen [][]bool) {
	r := c.r
	saga, service := r.names[l.saga], hbServices[l.service]
	if l.err != "" || l.status != http.StatusOK {
		c.add(violation{Rule: "request-failed", At: r.at(l.sent), Saga: saga, Service: service,
			Want: "200", Got: fmt.Sprintf("lookup %s: %d %s", r.span(l.sent, l.recv), l.status, l.err)})
		return
	}
	c.counts[l.saga].lookups++
	if l.stale {
		c.add(violation{Rule: "stale", At: r.at(l.sent), Saga: saga, Service: service,
			Want: "a fresh answer (no faults are injected)", Got: fmt.Sprintf("lookup %s marked X-Saga-Stale", r.span(l.sent, l.recv))})
	}
	listed := map[int]hbListed{}
	for _, in := range l.listed {
		if in.inst < 0 {
			c.add(violation{Rule: "phantom", At: r.at(l.sent), Saga: saga, Service: service, ID: in.id,
				Want: "only ids the clients wrote", Got: fmt.Sprintf("lookup %s listed it", r.span(l.sent, l.recv))})
			continue
		}
		listed[in.inst] = in
		seen[in.inst][l.saga] = true
		id := r.insts[in.inst].id
		if !in.expires.After(r.at(l.sent - hbSlack)) {
			c.add(violation{Rule: "expires-passed", At: r.at(l.sent), Saga: saga, Service: service, ID: id,
				Want: fmt.Sprintf("expires_at after the lookup was sent (%.3fs)", l.sent.Seconds()),
				Got:  fmt.Sprintf("lookup %s listed it with expires_at %.3fs", r.span(l.sent, l.recv), in.expires.Sub(r.start).Seconds())})
		}
		deadline, last, ok := c.tls[in.inst].latestDeadline(l.recv)
		if !ok || deadline+hbSlack <= l.sent {
			want := "absent: nothing of it was written before the answer"
			if ok {
				want = fmt.Sprintf("absent: the writes sent before the answer set a deadline by %.3fs at the latest (the last of them: %s)",
					deadline.Seconds(), r.describeWrite(last))
			}
			c.add(violation{Rule: "past-deadline", At: r.at(l.sent), Saga: saga, Service: service, ID: id,
				Want: want, Got: fmt.Sprintf("lookup %s listed it with expires_at %.3fs", r.span(l.sent, l.recv), in.expires.Sub(r.start).Seconds())})
		}
	}
	for i, in := range r.insts {
		if in.service != service {
			continue
		}
		if c.tls[i].surelyLive(l.sent, l.recv, 0) == nil {
			continue
		}
		counts := &c.counts[l.saga]
		counts.pairs++
		_, shown := listed[i]
		if shown {
			counts.listed++
		}
		h := c.tls[i].surelyLive(l.sent, l.recv, agreeWithin)
		if h == nil {
			continue
		}
		counts.required++
		if !shown {
			c.add(violation{Rule: "hidden", At: r.at(l.sent), Saga: saga, Service: service, ID: in.id,
				Want: fmt.Sprintf("listed: the store surely held it live from %.3fs (%s), at least %s before the lookup, to past %.3fs (every write that may have followed was sent at %.3fs or later)",
					h.recv.Seconds(), r.describeWrite(h), agreeWithin, (l.recv + agreeWithin).Seconds(), (l.recv + agreeWithin + hbSlack - hbTTL).Seconds()),
				Got: fmt.Sprintf("lookup %s lacked it (%d listed)", r.span(l.sent, l.recv), len(l.listed))})
		}
	}
}

// thin complains when the run checked too little to prove anything.
func (c *hbCheck) thin() []string {
	var out []string
	for saga, n := range c.counts {
		if n.required < 200 || 2*n.required < n.pairs {
			out = append(out, fmt.Sprintf("saga %s: only %d of %d (lookup, live instance) pairs were required to list the instance; the run proves too little",
				c.r.names[saga], n.required, n.pairs))
		}
	}
	return out
}

func (c *hbCheck) summary() string {
	r := c.r
	var beats, acked, regs int
	for k := range r.writes {
		w := &r.writes[k]
		if w.register {
			regs++
			continue
		}
		beats++
		if w.acked() {
			acked++
		}
	}
	var stopped, late int
	for _, in := range r.insts {
		if in.stop < r.load {
			stopped++
		}
		if in.start > 0 {
			late++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s of heartbeats then %.1fs of reads: %d instances (%d stopped mid-run, %d registered late), TTL %s; "+
		"%d heartbeats (%.0f/s, %d acknowledged, 404s per saga %v), %d registrations, %d notices published; %d instance-sagas seen gone",
		r.load, (r.lookupsEnd() - r.load).Seconds(), len(r.insts), stopped, late, hbTTL,
		beats, float64(beats)/r.load.Seconds(), acked, c.refused, regs, c.published, c.gone)
	for saga, n := range c.counts {
		ratio := 0.0
		if n.pairs > 0 {
			ratio = float64(n.listed) / float64(n.pairs)
		}
		fmt.Fprintf(&b, "; saga %s: %d lookups, %d pairs surely live in the store, %d required to be listed, %.1f%% listed",
			r.names[saga], n.lookups, n.pairs, n.required, 100*ratio)
	}
	return b.String()
}

func (r *hbRun) lookupsEnd() time.Duration {
	var end time.Duration
	for _, l := range r.lookups {
		end = max(end, l.recv)
	}
	return end
}

// redisPublishes reads how many PUBLISH commands Redis ran, the scripts'
// included, from INFO commandstats; -1 when it cannot tell.
func redisPublishes(t *testing.T, client *goredis.Client) int64 {
	info, err := client.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Logf("INFO commandstats: %v", err)
		return -1
	}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_publish:calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return 0
}
