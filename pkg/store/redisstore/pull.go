package redisstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
)

// Peers pull deadlines. A heartbeat that only moves a deadline later need
// not be published: each store keeps the deadline it delivered for every
// instance, and shortly before that deadline passes asks Redis for the
// deadline now (ZMSCORE, in batches), delivering a heartbeat event when it
// moved later. The heartbeat script leaves plain heartbeats unpublished
// only while every Saga on the Redis pulls (membership.go).

const (
	// pullTick is how often the store looks for deadlines about to pass.
	pullTick = 250 * time.Millisecond
	// pullLead is how long before a delivered deadline the store first asks
	// Redis for it. Instances fall due by the tick, so the first question
	// comes between pullLead and pullLead + pullTick before the deadline:
	// an instance renewed up to a second before its deadline is known
	// renewed before that deadline passes, with a second left for the
	// round trip, a busy Redis or a late tick. One renewed later is asked
	// about again at every tick, so it is found within a tick and a round
	// trip of its renewal: hidden, if at all, for a few hundred ms.
	pullLead = time.Second + pullTick
	// pullChunk bounds the ids of one ZMSCORE, as expireChunk bounds expiry.
	pullChunk = 500
	// pullPatience is how long past its deadline an instance that Redis
	// still holds is asked about at every tick; after that (no reaper has
	// run: only in tests, or with Redis too busy to expire it) once a second.
	pullPatience = 2 * time.Second
)

// noticeSnapshot is the type of the notices the snapshot and record
// scripts answer: an instance as it is, not a change.
const noticeSnapshot registry.EventType = "snapshot"

// pullKey names one instance.
type pullKey struct{ service, id string }

// pulled is what the store delivered of one instance.
type pulled struct {
	deadline int64  // ms; never later than what the view holds
	since    uint64 // the index of the registration, update or snapshot it comes from; 0: a heartbeat
	index    uint64 // of the event last delivered, for the events pulled
	rev      uint64
	status   registry.Status
	queue    queueState
	slot     int64 // the bucket it is queued in, when queue is inBucket
}

// queueState says where an instance waits for its next question.
type queueState uint8

const (
	notQueued queueState = iota
	inBucket
	inRetry // asked about at the next tick
)

// deadlineTracker keeps the deadline delivered of each instance, queued
// by the tick in which it falls due (its deadline minus pullLead), so that
// each tick looks only at the instances due. An instance is queued at most
// once: a deadline that moved later is queued again when its old bucket
// comes up; one that moved earlier is queued again at once, and its old
// entry is skipped.
type deadlineTracker struct {
	mu      sync.Mutex
	byKey   map[pullKey]*pulled
	buckets map[int64][]pullKey
	retry   []pullKey
	next    int64 // the first bucket not yet taken
	started bool  // a bucket has been taken
}

// bucketOf is the bucket of an instance whose delivered deadline is ms:
// the tick in which it falls due.
func bucketOf(ms int64) int64 { return (ms - pullLead.Milliseconds()) / pullTick.Milliseconds() }

// saw records the deadline of a notice about to be delivered. It must be
// called before the event is emitted, so that a pull that races a
// registration sees the registration and drops its answer.
func (t *deadlineTracker) saw(n notice) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sawLocked(n)
}

func (t *deadlineTracker) sawLocked(n notice) {
	k := pullKey{n.Service, n.ID}
	p := t.byKey[k]
	switch n.Type {
	case registry.EventDeregistered, registry.EventExpired:
		if p != nil && n.Index >= p.since {
			delete(t.byKey, k)
		}
		return
	case registry.EventRegistered, registry.EventUpdated, registry.EventHeartbeat, noticeSnapshot:
	default:
		return
	}
	if n.Rev == 0 {
		return // state of an earlier release: its heartbeats are always published
	}
	if t.byKey == nil {
		t.byKey, t.buckets = map[pullKey]*pulled{}, map[int64][]pullKey{}
	}
	if p == nil {
		p = &pulled{deadline: n.Expires, index: n.Index, rev: n.Rev, status: n.Status}
		if n.Type != registry.EventHeartbeat {
			p.since = n.Index
		}
		t.byKey[k] = p
		t.queueLocked(k, p)
		return
	}
	switch n.Type {
	case registry.EventRegistered, registry.EventUpdated:
		if n.Index < p.since {
			return // older than what is held: the view ignores it too
		}
		p.deadline, p.since = n.Expires, n.Index
	case registry.EventHeartbeat:
		// The view keeps the latest deadline of the heartbeats it gets.
		// Of another registration, take this one's: earlier is safe.
		if n.Rev == p.rev {
			p.deadline = max(p.deadline, n.Expires)
		} else {
			p.deadline = n.Expires
		}
	case noticeSnapshot:
		// The view may ignore a snapshot (one read before its latest
		// change), so keep the earlier deadline: asking early is safe,
		// asking late could hide a live instance.
		p.deadline = min(p.deadline, n.Expires)
		if n.Index < p.since {
			return
		}
		p.since = n.Index
	}
	p.index, p.rev, p.status = n.Index, n.Rev, n.Status
	if p.queue == notQueued || (p.queue == inBucket && bucketOf(p.deadline) < p.slot) {
		t.queueLocked(k, p)
	}
}

// queueLocked puts p in the bucket of its deadline, or in the retry list
// when that bucket has been taken already.
func (t *deadlineTracker) queueLocked(k pullKey, p *pulled) {
	t.queueAtLocked(k, p, bucketOf(p.deadline))
}

func (t *deadlineTracker) queueAtLocked(k pullKey, p *pulled, b int64) {
	if t.started && b < t.next {
		t.retryLocked(k, p)
		return
	}
	p.queue, p.slot = inBucket, b
	t.buckets[b] = append(t.buckets[b], k)
}

func (t *deadlineTracker) retryLocked(k pullKey, p *pulled) {
	p.queue = inRetry
	t.retry = append(t.retry, k)
}

// pullCandidate is an instance due, as the tracker held it when taken.
type pullCandidate struct {
	key      pullKey
	p        *pulled
	since    uint64
	deadline int64
}

// take returns the instances whose delivered deadline is within pullLead
// of now (or past), each once.
func (t *deadlineTracker) take(now int64) []pullCandidate {
	t.mu.Lock()
	defer t.mu.Unlock()
	horizon := now / pullTick.Milliseconds() // the bucket of what falls due now
	if !t.started {
		t.started, t.next = true, horizon
		for b := range t.buckets {
			t.next = min(t.next, b)
		}
	}
	var out []pullCandidate
	consider := func(k pullKey, queue queueState, slot int64) {
		p := t.byKey[k]
		if p == nil || p.queue != queue || (queue == inBucket && p.slot != slot) {
			return // stale: untracked, or queued elsewhere since
		}
		p.queue = notQueued
		if b := bucketOf(p.deadline); b > horizon {
			t.queueAtLocked(k, p, b) // renewed since it was queued
			return
		}
		out = append(out, pullCandidate{key: k, p: p, since: p.since, deadline: p.deadline})
	}
	retry := t.retry
	t.retry = nil
	for _, k := range retry {
		consider(k, inRetry, 0)
	}
	for b := t.next; b <= horizon; b++ {
		keys := t.buckets[b]
		delete(t.buckets, b)
		for _, k := range keys {
			consider(k, inBucket, b)
		}
	}
	t.next = max(t.next, horizon+1)
	return out
}

// again queues a candidate that Redis has not renewed: at the next tick,
// or, long past its deadline, a second later.
func (t *deadlineTracker) again(c pullCandidate, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.againLocked(c, now)
}

func (t *deadlineTracker) againLocked(c pullCandidate, now int64) {
	if t.byKey[c.key] != c.p || c.p.queue != notQueued {
		return // untracked, or queued again by a notice meanwhile
	}
	if now < c.p.deadline+pullPatience.Milliseconds() {
		t.retryLocked(c.key, c.p)
		return
	}
	t.queueAtLocked(c.key, c.p, bucketOf(now+time.Second.Milliseconds()+pullLead.Milliseconds()))
}

// tracked reports the deadline delivered of service/id, for tests.
func (t *deadlineTracker) tracked(service, id string) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byKey[pullKey{service, id}]
	if p == nil {
		return 0, false
	}
	return p.deadline, true
}

// pullLoop asks Redis, every pullTick, for the deadlines about to pass.
// While Redis does not answer it waits: expiry is frozen then anyway, and
// on reconnecting the grace and the snapshot bring every deadline.
func (s *Store) pullLoop(ctx context.Context) {
	tick := time.NewTicker(pullTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.up.Load() {
			continue
		}
		if err := s.pullDue(ctx, s.clock.Now()); err != nil && ctx.Err() == nil {
			s.logger.Debug("pulling deadlines failed; asking again at the next tick", "err", err)
		}
	}
}

// pullDue asks Redis for the deadlines of the instances due at now, one
// ZMSCORE per service and pullChunk ids, all in one pipeline, and delivers
// a heartbeat event for each that Redis holds later than delivered.
func (s *Store) pullDue(ctx context.Context, now time.Time) error {
	nowMs := millis(now)
	cands := s.pulls.take(nowMs)
	if len(cands) == 0 {
		return nil
	}
	slices.SortFunc(cands, func(a, b pullCandidate) int {
		if a.key.service < b.key.service {
			return -1
		}
		if a.key.service > b.key.service {
			return 1
		}
		return 0
	})
	type chunk struct {
		cands []pullCandidate
		cmd   *goredis.FloatSliceCmd
	}
	var chunks []*chunk
	for start := 0; start < len(cands); {
		end := start + 1
		for end < len(cands) && end-start < pullChunk && cands[end].key.service == cands[start].key.service {
			end++
		}
		chunks = append(chunks, &chunk{cands: cands[start:end]})
		start = end
	}
	ioCtx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	_, _ = s.client.Pipelined(ioCtx, func(p goredis.Pipeliner) error {
		for _, c := range chunks {
			ids := make([]string, len(c.cands))
			for i, cand := range c.cands {
				ids[i] = cand.key.id
			}
			c.cmd = p.ZMScore(ioCtx, deadlinesKey(c.cands[0].key.service), ids...)
		}
		return nil
	})
	var firstErr error
	var missing []pullCandidate
	for _, c := range chunks {
		scores, err := c.cmd.Result()
		if err == nil && len(scores) != len(c.cands) {
			err = fmt.Errorf("ZMSCORE answered %d scores for %d ids", len(scores), len(c.cands))
		}
		if err != nil {
			firstErr = keepFirst(firstErr, err)
			for _, cand := range c.cands {
				s.pulls.again(cand, nowMs)
			}
			continue
		}
		for i, cand := range c.cands {
			if !s.renewFromRedis(cand, int64(scores[i]), nowMs) {
				missing = append(missing, cand)
			}
		}
	}
	for _, cand := range missing {
		if err := s.pullRecord(ctx, cand, nowMs); err != nil {
			firstErr = keepFirst(firstErr, err)
		}
	}
	if firstErr != nil {
		return s.fail(ctx, "pull deadlines", firstErr)
	}
	return nil
}

// renewFromRedis acts on Redis's deadline of one candidate (0: gone). It
// reports false when the deadline moved but the record to deliver it with
// is not cached; the caller then reads it (pullRecord).
func (s *Store) renewFromRedis(c pullCandidate, deadline, now int64) bool {
	t := &s.pulls
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byKey[c.key]
	switch {
	case p != c.p || p.since != c.since:
		// Untracked, or registered again while Redis answered: the
		// notice of that change is what counts.
		return true
	case deadline == 0:
		// Gone from Redis: its deregistration or expiry notice follows.
		delete(t.byKey, c.key)
		return true
	case deadline <= p.deadline:
		t.againLocked(c, now)
		return true
	}
	cached := s.records.lookup(c.key.service, c.key.id)
	if cached.rev != p.rev {
		return false
	}
	n := notice{
		Type: registry.EventHeartbeat, Service: c.key.service, ID: c.key.id,
		Index: p.index, Rev: p.rev, Status: p.status,
		Heartbeat: deadline - int64(cached.rec.TTLSeconds)*1000, Expires: deadline,
		rec: cached.rec,
	}
	s.emitPulledLocked(n)
	return true
}

// pullRecord reads the whole instance of a candidate whose record is not
// cached (recordScript), and delivers its deadline when it moved later.
func (s *Store) pullRecord(ctx context.Context, c pullCandidate, now int64) error {
	cur, ok, err := s.fetchRecord(ctx, notice{Service: c.key.service, ID: c.key.id, Rev: c.p.rev})
	t := &s.pulls
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byKey[c.key]
	if p != c.p || p.since != c.since {
		return err
	}
	switch {
	case err != nil:
		t.againLocked(c, now)
		return err
	case !ok:
		delete(t.byKey, c.key) // gone or registered again: the notice of that follows
		return nil
	case cur.Expires <= p.deadline:
		t.againLocked(c, now)
		return nil
	}
	cur.Type, cur.Index = registry.EventHeartbeat, p.index
	s.emitPulledLocked(cur)
	return nil
}

// emitPulledLocked delivers a deadline pulled from Redis, with the
// tracker locked, so that no notice of the same instance is recorded
// between the check and the event.
func (s *Store) emitPulledLocked(n notice) {
	s.pulls.sawLocked(n)
	ev := n.event()
	s.due.saw(ev)
	s.feed.Emit(ev)
}
