package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/redisstore/redisurl"
)

// Store is a registry.Store on Redis. It is safe for concurrent use.
type Store struct {
	client     goredis.UniversalClient
	pubsub     *goredis.PubSub
	clock      registry.Clock
	logger     *slog.Logger
	origin     string // tells this store's own notices from other processes'
	minAcks    int
	ackTimeout time.Duration

	up    atomic.Bool   // Redis answers and the grace after an outage is granted
	kick  chan struct{} // wakes the monitor when a command found Redis gone
	known sync.Map      // service names known to be in the catalogue set
	names sync.Map      // service name -> serviceNames, for the services heartbeats renew

	records recordCache
	due     dueHints
	pulls   deadlineTracker // the deadlines delivered, for pullLoop (pull.go)
	quiet   atomic.Int64    // until when (unix ns) every Saga pulls (membership.go)
	batch   batcher         // writes that wait for the next round trip (batch.go)

	feed         *registry.Feed
	tokenChanges chan struct{} // TokenChanges (tokens.go)

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ registry.Store = (*Store)(nil)

// Open builds the store for opts.URL. It fails only when the URL is malformed
// or a TLS file cannot be read. When Redis cannot be reached, the store
// starts degraded (every method returns registry.ErrUnavailable) and keeps
// retrying in the background; once connected it grants the grace of
// self-preservation and sends EventResync.
func Open(ctx context.Context, opts Options, logger *slog.Logger) (*Store, error) {
	t, err := redisurl.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	tlsCfg, err := tlsConfig(t, opts)
	if err != nil {
		return nil, fmt.Errorf("redis tls: %w", err)
	}
	if opts.MinReplicasAck < 0 {
		return nil, fmt.Errorf("redis min replicas ack: %d is below 0", opts.MinReplicasAck)
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = defaultAckTimeout
	}
	if opts.Clock == nil {
		opts.Clock = registry.SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client:     newClient(t, tlsCfg, opts),
		clock:      opts.Clock,
		logger:     logger.With("component", "redis-store"),
		origin:     registry.NewID(),
		minAcks:    opts.MinReplicasAck,
		ackTimeout: opts.AckTimeout,
		kick:       make(chan struct{}, 1),
		feed:       registry.NewFeed(changesBuffer),

		tokenChanges: make(chan struct{}, 1),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel

	// Subscribe before the first write can happen, so no change made by
	// another process after Open returns is missed. The PubSub remembers
	// the channel even when Redis is down and subscribes on reconnect.
	firstCtx, cancelFirst := context.WithTimeout(ctx, dialTimeout)
	defer cancelFirst()
	s.pubsub = s.client.Subscribe(firstCtx, changeChannel)
	err = s.client.Ping(firstCtx).Err()
	if err == nil {
		_, err = s.pubsub.ReceiveTimeout(firstCtx, dialTimeout) // the subscription's confirmation
	}
	if err == nil {
		s.up.Store(true)
		s.logger.Info("connected to redis", "addrs", t.Addrs)
	} else {
		s.logger.Warn("redis unreachable at start-up; serving degraded and retrying", "addrs", t.Addrs, "err", err)
	}
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.monitor(runCtx) }()
	go func() { defer s.wg.Done(); s.subscribe(runCtx) }()
	go func() { defer s.wg.Done(); s.pullLoop(runCtx) }()
	return s, nil
}

// Register stores in, replacing an instance with the same service and id.
func (s *Store) Register(ctx context.Context, in registry.Instance) (registry.Event, error) {
	if err := registry.ValidateStored(in); err != nil {
		return registry.Event{}, err
	}
	if err := s.available("register"); err != nil {
		return registry.Event{}, err
	}
	if err := s.addToCatalog(ctx, in.Service); err != nil {
		return registry.Event{}, s.fail(ctx, "register", err)
	}
	now := in.LastHeartbeat
	if now.IsZero() {
		now = in.RegisteredAt
	}
	status := in.Status
	if status == "" {
		status = registry.StatusPassing
	}
	rec, err := json.Marshal(record{
		Address: in.Address, Port: in.Port, Tags: in.Tags, Metadata: in.Metadata,
		TTLSeconds: in.TTLSeconds, RegisteredAt: millis(in.RegisteredAt),
		Checks: registry.CheckDefinitions(in.Checks),
	})
	if err != nil {
		return registry.Event{}, fmt.Errorf("redis register: encode instance: %w", err)
	}
	return s.write(ctx, "register", in.Service,
		in.ID, rec, string(status), in.TTLSeconds, millis(now), millis(in.ExpiresAt), newRev())
}

// Heartbeat renews a live instance in one round trip, shared with the
// other writes in flight (batch.go).
func (s *Store) Heartbeat(ctx context.Context, service, id string, status registry.Status, now time.Time) (registry.Event, error) {
	if err := registry.ValidateStatus(status); err != nil {
		return registry.Event{}, err
	}
	if err := s.available("heartbeat"); err != nil {
		return registry.Event{}, err
	}
	// The record held now, not after the call: the script leaves it out
	// of its answer only when this very registration is held.
	held := s.records.lookup(service, id)
	names, cached := s.names.Load(service)
	if !cached {
		names = newServiceNames(service, s.origin)
	}
	c := &writeCall{ctx: ctx, op: "heartbeat", service: service, names: names.(serviceNames),
		args: []any{id, string(status), millis(now), held.rev}}
	if err := s.do(c); err != nil {
		return registry.Event{}, s.fail(ctx, "heartbeat", err)
	}
	if c.raw == "" {
		return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", service, id, registry.ErrNotFound)
	}
	if !cached {
		s.names.Store(service, c.names) // only names that exist: a live instance just answered
	}
	if n, ok := compactHeartbeat(c.raw, service, id, held); ok {
		return s.deliverNotice(n), nil
	}
	return s.deliverHeld(c.raw, held)
}

// compactHeartbeat reads the heartbeat script's short answer,
// "h index status now expires", into the notice of a plain heartbeat of
// the record held. ok is false for any other answer.
func compactHeartbeat(raw, service, id string, held cachedRecord) (n notice, ok bool) {
	rest, ok := strings.CutPrefix(raw, "h ")
	if !ok || held.rev == 0 {
		return notice{}, false
	}
	var f [4]string // split by hand: strings.Fields would allocate on every heartbeat
	for i := range 3 {
		if f[i], rest, ok = strings.Cut(rest, " "); !ok {
			return notice{}, false
		}
	}
	f[3] = rest
	index, err1 := strconv.ParseUint(f[0], 10, 64)
	hb, err2 := strconv.ParseInt(f[2], 10, 64)
	expires, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || registry.ValidateStatus(registry.Status(f[1])) != nil {
		return notice{}, false
	}
	n.Service, n.ID, n.Type = service, id, registry.EventHeartbeat
	n.Index, n.Rev, n.Status, n.Heartbeat, n.Expires = index, held.rev, registry.Status(f[1]), hb, expires
	n.rec = held.rec
	return n, true
}

// Deregister removes an instance.
func (s *Store) Deregister(ctx context.Context, service, id string) (registry.Event, error) {
	if err := s.available("deregister"); err != nil {
		return registry.Event{}, err
	}
	return s.write(ctx, "deregister", service, id)
}

// write registers or deregisters in the next round trip (batch.go), which
// with MinReplicasAck waits for the replicas. A change that the replicas
// did not acknowledge in time is still made and announced, but reported
// as ErrUnavailable.
func (s *Store) write(ctx context.Context, op, service, id string, args ...any) (registry.Event, error) {
	c := &writeCall{ctx: ctx, op: op, service: service, args: append([]any{id}, args...)}
	if err := s.do(c); err != nil {
		return registry.Event{}, s.fail(ctx, op, err)
	}
	if c.raw == "" {
		return registry.Event{}, fmt.Errorf("%s %s/%s: %w", op, service, id, registry.ErrNotFound)
	}
	ev, err := s.deliver(c.raw)
	if err != nil {
		return ev, err
	}
	if s.minAcks > 0 && c.acked < int64(s.minAcks) {
		return ev, fmt.Errorf("redis %s: %w: only %d of %d replicas acknowledged the change within %s; it is on the master but a failover now could lose it",
			op, registry.ErrUnavailable, c.acked, s.minAcks, s.ackTimeout)
	}
	return ev, nil
}

// runAndWait sends the script and WAIT in one pipeline on one connection
// to the service's master: WAIT counts the replicas that have everything
// that connection wrote. Token writes use it; instance writes batch.
func (s *Store) runAndWait(ctx context.Context, script *goredis.Script, keys []string, args []any) (string, int64, error) {
	var node *goredis.Client
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		var err error
		if node, err = c.MasterForKey(ctx, keys[0]); err != nil {
			return "", 0, err
		}
	case *goredis.Client:
		node = c
	default:
		return "", 0, fmt.Errorf("WAIT is not supported on %T", s.client)
	}
	sc := &scriptCall{script: script, keys: keys, args: args}
	acked, err := runPipelined(ctx, node, []*scriptCall{sc}, []any{"WAIT", s.minAcks, s.ackTimeout.Milliseconds()})
	if err != nil {
		return "", 0, err
	}
	raw, err := sc.cmd.Text()
	return raw, acked, err
}

// expireChunk bounds the instances that one expire script removes, so
// that a mass expiry leaves Redis free for other clients between calls.
const expireChunk = 500

// ExpireDue removes every instance whose deadline is not after now, one
// script per service, all in one pipeline: for the services that may have
// something due (dueHints), and every sweepEvery for the whole catalogue.
// A service with more than expireChunk due gets another pipeline, until
// nothing due is left. It returns the events of what it removed even when
// some services failed (then with the error too).
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]registry.Event, error) {
	if err := s.available("expire"); err != nil {
		return nil, err
	}
	sweep, names, gens := s.due.plan(now)
	if sweep {
		var err error
		if names, err = s.client.SMembers(ctx, catalogKey).Result(); err != nil {
			return nil, s.fail(ctx, "expire", err)
		}
	}
	limit := millis(now)
	var events []registry.Event
	var firstErr error
	next := make(map[string]int64, len(names))
	for len(names) > 0 && ctx.Err() == nil {
		cmds, err := s.runEach(ctx, expireScript, names, limit, expireChunk)
		if err != nil {
			return events, s.fail(ctx, "expire", err)
		}
		var again []string
		for i, cmd := range cmds {
			removed, earliest, err := s.expired(names[i], cmd)
			events = append(events, removed...)
			if err != nil {
				firstErr = keepFirst(firstErr, err)
				continue
			}
			if earliest == nil {
				continue
			}
			next[names[i]] = *earliest
			if *earliest <= limit {
				again = append(again, names[i])
			}
		}
		names = again
	}
	if firstErr != nil {
		return events, s.fail(ctx, "expire", firstErr)
	}
	s.due.done(now, sweep, gens, next)
	return events, nil
}

// expired reads one expire script's answer: the events of what it removed
// and the service's earliest deadline left (math.MaxInt64 when none; nil
// when the answer says nothing of it).
func (s *Store) expired(service string, cmd *goredis.Cmd) ([]registry.Event, *int64, error) {
	raws, err := cmd.StringSlice()
	if err != nil || len(raws) == 0 {
		return nil, nil, err
	}
	var events []registry.Event
	var firstErr error
	for _, raw := range raws[1:] {
		ev, err := s.deliver(raw)
		if err != nil {
			firstErr = keepFirst(firstErr, err)
			continue
		}
		events = append(events, ev)
	}
	earliest := int64(math.MaxInt64) // no instance left: nothing due until a notice says so
	if raws[0] != "" {
		if earliest, err = strconv.ParseInt(raws[0], 10, 64); err != nil {
			return events, nil, keepFirst(firstErr, fmt.Errorf("expire %s: next deadline %q: %w", service, raws[0], err))
		}
	}
	return events, &earliest, firstErr
}

// GrantGrace moves every deadline earlier than now + TTL to now + TTL.
func (s *Store) GrantGrace(ctx context.Context, now time.Time) error {
	if err := s.available("grant grace"); err != nil {
		return err
	}
	if err := s.grantGrace(ctx, now); err != nil {
		return s.fail(ctx, "grant grace", err)
	}
	return nil
}

func (s *Store) grantGrace(ctx context.Context, now time.Time) error {
	names, err := s.client.SMembers(ctx, catalogKey).Result()
	if err != nil {
		return err
	}
	cursors := make([]string, len(names))
	for i := range cursors {
		cursors[i] = "0"
	}
	var firstErr error
	for len(names) > 0 {
		cmds, err := s.runEachWith(ctx, graceScript, names, func(i int) []any {
			return []any{millis(now), cursors[i], expireChunk}
		})
		if err != nil {
			return err
		}
		var more []string
		var moreCursors []string
		for i, cmd := range cmds {
			raws, err := cmd.StringSlice()
			if err != nil || len(raws) == 0 {
				firstErr = keepFirst(firstErr, err)
				continue
			}
			for _, raw := range raws[1:] {
				if _, err := s.deliver(raw); err != nil {
					firstErr = keepFirst(firstErr, err)
				}
			}
			if raws[0] != "0" {
				more, moreCursors = append(more, names[i]), append(moreCursors, raws[0])
			}
		}
		names, cursors = more, moreCursors
	}
	return firstErr
}

// snapshotAttempts is how many times Snapshot reads a service again when
// its index moved while its pages were read.
const snapshotAttempts = 3

// pagedService is one service's snapshot as Snapshot reads it page by page.
type pagedService struct {
	name      string
	cursor    string
	first     int64 // the index at the first page of this attempt
	lowest    int64 // the lowest index any page of this attempt saw
	moved     bool  // the index moved between pages of this attempt
	attempts  int
	instances map[string]registry.Instance
}

// Snapshot reads every service in the catalogue, each at one moment: a
// page of at most expireChunk instances per round trip (snapshotScript),
// every service with pages left in one pipeline. A service whose index
// moved between its first page and its last is read again, up to
// snapshotAttempts times; if it still moves, the pages are taken as they
// are, labelled with the lowest index they saw. Each page was read after
// that index, so every change the label leaves out comes later as an
// event above it, which the view applies on top.
func (s *Store) Snapshot(ctx context.Context) (registry.Snapshot, error) {
	snap := registry.Snapshot{Services: map[string]registry.ServiceSnapshot{}}
	if err := s.available("snapshot"); err != nil {
		return snap, err
	}
	names, err := s.client.SMembers(ctx, catalogKey).Result()
	if err != nil {
		return snap, s.fail(ctx, "snapshot", err)
	}
	pending := make([]*pagedService, len(names))
	for i, name := range names {
		pending[i] = &pagedService{name: name, cursor: "0", attempts: 1, instances: map[string]registry.Instance{}}
	}
	for len(pending) > 0 {
		names := make([]string, len(pending))
		for i, p := range pending {
			names[i] = p.name
		}
		cmds, err := s.runEachWith(ctx, snapshotScript, names, func(i int) []any {
			return []any{pending[i].cursor, expireChunk}
		})
		if err != nil {
			return snap, s.fail(ctx, "snapshot", err)
		}
		var more []*pagedService
		for i, cmd := range cmds {
			p := pending[i]
			done, err := s.readPage(p, cmd)
			if err != nil {
				return snap, s.fail(ctx, "snapshot", err)
			}
			if !done {
				more = append(more, p)
				continue
			}
			if p.lowest == 0 {
				continue // in the catalogue but never changed: no index yet
			}
			if p.moved && p.attempts < snapshotAttempts {
				p.attempts++
				p.cursor, p.moved, p.first, p.lowest = "0", false, 0, 0
				clear(p.instances)
				more = append(more, p)
				continue
			}
			svc := registry.ServiceSnapshot{Index: uint64(p.lowest), Instances: make([]registry.Instance, 0, len(p.instances))}
			live := make(map[string]bool, len(p.instances))
			for _, id := range slices.Sorted(maps.Keys(p.instances)) {
				svc.Instances = append(svc.Instances, p.instances[id])
				live[id] = true
			}
			s.records.prune(p.name, live)
			snap.Services[p.name] = svc
		}
		pending = more
	}
	return snap, nil
}

// readPage adds one page of snapshotScript's answer to p and reports
// whether p's last page has been read.
func (s *Store) readPage(p *pagedService, cmd *goredis.Cmd) (bool, error) {
	reply, err := cmd.Slice()
	if err != nil {
		return false, err
	}
	if len(reply) < 2 {
		return false, fmt.Errorf("redis snapshot of %s: short answer", p.name)
	}
	index, _ := reply[0].(int64)
	cursor, _ := reply[1].(string)
	if p.cursor == "0" && p.first == 0 {
		p.first = index
	}
	if index != p.first {
		p.moved = true
	}
	if p.lowest == 0 || index < p.lowest {
		p.lowest = index
	}
	for _, item := range reply[2:] {
		raw, _ := item.(string)
		n, err := s.records.decodeNotice(raw, cachedRecord{})
		if err != nil {
			return false, fmt.Errorf("redis snapshot of %s: %w", p.name, err)
		}
		p.instances[n.ID] = n.instance() // HSCAN may return one twice
		s.pulls.saw(n)
	}
	p.cursor = cursor
	return cursor == "0", nil
}

// Changes delivers this store's events and those of every other Saga
// process on the same Redis.
func (s *Store) Changes() <-chan registry.Event { return s.feed.C() }

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.available("ping"); err != nil {
		return err
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close stops the background work and closes the connections. Changes is
// closed once nothing can send on it any more.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		_ = s.pubsub.Close()
		s.wg.Wait()
		s.feed.Close()
		err = s.client.Close()
	})
	return err
}

// scriptArgs puts the channel and the notice head before a script's own
// arguments (the ARGV layout of scripts.go).
func (s *Store) scriptArgs(service string, args ...any) []any {
	return append([]any{changeChannel, noticeHead(s.origin, service)}, args...)
}

// runEach runs script once per service in one pipeline, loading the script
// and retrying the services that answered NOSCRIPT (a restarted or newly
// promoted Redis has an empty script cache).
func (s *Store) runEach(ctx context.Context, script *goredis.Script, services []string, args ...any) ([]*goredis.Cmd, error) {
	return s.runEachWith(ctx, script, services, func(int) []any { return args })
}

// runEachWith is runEach with arguments of each service's own: args(i)
// for services[i].
func (s *Store) runEachWith(ctx context.Context, script *goredis.Script, services []string, args func(i int) []any) ([]*goredis.Cmd, error) {
	cmds := make([]*goredis.Cmd, len(services))
	pending := make([]int, len(services))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, i := range pending {
				cmds[i] = script.EvalSha(ctx, p, serviceKeys(services[i]), s.scriptArgs(services[i], args(i)...)...)
			}
			return nil
		})
		var retry []int
		for _, i := range pending {
			if isNoScript(cmds[i].Err()) {
				retry = append(retry, i)
			}
		}
		if len(retry) == 0 || attempt > 0 {
			break
		}
		if err := script.Load(ctx, s.client).Err(); err != nil {
			return nil, err
		}
		pending = retry
	}
	return cmds, nil
}

// addToCatalog adds a service to the catalogue set before its first write.
// The set is a single key outside the service's hash slot, so it cannot
// join the script's atomic change; adding first means a service with an
// index is always listed.
func (s *Store) addToCatalog(ctx context.Context, service string) error {
	if _, ok := s.known.Load(service); ok {
		return nil
	}
	if err := s.client.SAdd(ctx, catalogKey, service).Err(); err != nil {
		return err
	}
	s.known.Store(service, struct{}{})
	return nil
}

// newRev draws the rev of a registration (scripts.go): random, not 0.
func newRev() uint64 {
	for {
		if rev := rand.Uint64(); rev != 0 {
			return rev
		}
	}
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// keepFirst keeps the first of several errors.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
