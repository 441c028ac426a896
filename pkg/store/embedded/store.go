// Package embedded is Saga's default registry.Store: one node, no set-up,
// kept in a bbolt file in the data directory.
//
// Memory is the working copy and disk the durable one. Every change that
// moves an index (register, deregister, expiry, status change) is written
// and fsynced before anyone sees it: it reaches memory, Snapshot and Changes
// only once its transaction has committed, and then the call returns;
// concurrent changes share one fsync (group commit). A change that cannot
// be written is never seen, and the store refuses changes until the disk
// takes writes again, which it finds out by itself. Heartbeats that only
// move a deadline change memory alone; deadlines reach the disk every few
// seconds and at Close, and after a crash the daemon's start-up grace
// (Store.GrantGrace) covers the stale ones.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sagaproject/saga/pkg/registry"
)

// FileName is the name of the data file inside the data directory.
const FileName = "saga.db"

const (
	// lockTimeout is how long Open waits for another process's lock on the
	// data file before it gives up.
	lockTimeout = time.Second
	// flushInterval is how often deadlines moved by heartbeats are written.
	flushInterval = 5 * time.Second
	// probeInterval is how often a store whose writes failed tries a write
	// again, to take writes once the disk does.
	probeInterval = time.Second
	// changesBuffer is how many events wait for the Changes reader before
	// the store starts dropping them (and later sends EventResync).
	changesBuffer = 4096
)

var (
	// ErrInUse means another process holds the data file's lock.
	ErrInUse = errors.New("in use by another saga process")
	// ErrCorrupt means the data file is damaged or is not a Saga data file.
	ErrCorrupt = errors.New("corrupt data file")

	errClosed = fmt.Errorf("store is closed: %w", registry.ErrUnavailable)
)

// Bucket names: the on-disk layout, described in docs/storage.md.
var (
	bucketMeta      = []byte("meta")      // "format" → formatVersion; "probe" only while a probe runs (commit.go)
	bucketServices  = []byte("services")  // service name → index, 8 bytes big-endian
	bucketInstances = []byte("instances") // service + 0x00 + id → record (record.go)
	bucketTokens    = []byte("tokens")    // accessor → JSON of auth.Token (tokens.go)
	keyFormat       = []byte("format")
	keyProbe        = []byte("probe")
)

const formatVersion = "1"

var _ registry.Store = (*Store)(nil)

// Store is the embedded registry store. Its methods are safe for concurrent use.
type Store struct {
	path   string
	logger *slog.Logger
	opts   options
	feed   *registry.Feed

	kick chan struct{} // wakes the committer; closed by Close
	stop chan struct{} // stops the flusher; closed by Close
	wg   sync.WaitGroup

	mu sync.Mutex
	db *bolt.DB // replaced only while writes fail (reopen)
	// services is the committed memory: what is on disk, plus deadlines
	// that heartbeats moved. Snapshot reads it alone.
	services map[string]*service
	// nextDue is at or before the earliest deadline, committed or pending,
	// so that ExpireDue skips its scan until something can be due.
	nextDue int64
	writing *batch // the batch the committer is writing
	pending *batch // the batch filling up, computed on top of writing
	// failed is why writes are refused: a batch failed to commit, and the
	// probe has not yet found the disk writable again.
	failed   error
	failedAt time.Time
	// repair names what failed batches touched, which the probe writes
	// back from committed memory.
	repair        map[key]struct{}
	repairIndexes map[string]struct{}
	closed        bool

	tokens tokenState // tokens.go
}

type service struct {
	index     uint64
	instances map[string]entry
}

// Open opens the store in dir, creating the directory (mode 0700) and the
// data file as needed. A directory that cannot be used, a file locked by
// another process (ErrInUse) or a damaged file (ErrCorrupt) is an error.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	return open(dir, logger, options{})
}

// options are the tunables that tests change; zero values take the defaults.
type options struct {
	flushInterval time.Duration
	probeInterval time.Duration
	changesBuffer int
	// clock dates the grace granted when writes work again.
	clock registry.Clock
	// writeHook, when set, runs inside every write transaction; an error
	// from it fails the transaction as a full disk would.
	writeHook func() error
}

func (o options) withDefaults() options {
	if o.flushInterval <= 0 {
		o.flushInterval = flushInterval
	}
	if o.probeInterval <= 0 {
		o.probeInterval = probeInterval
	}
	if o.changesBuffer <= 0 {
		o.changesBuffer = changesBuffer
	}
	if o.clock == nil {
		o.clock = registry.SystemClock{}
	}
	return o
}

func open(dir string, logger *slog.Logger, opts options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openDB(path)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("data directory %s is %w", dir, ErrInUse)
	}
	if errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) || errors.Is(err, bolterrors.ErrVersionMismatch) {
		return nil, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open data file: %w", err)
	}
	opts = opts.withDefaults()
	s := &Store{
		db:            db,
		path:          path,
		logger:        logger.With("component", "store", "path", path),
		opts:          opts,
		feed:          registry.NewFeed(opts.changesBuffer),
		kick:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		services:      make(map[string]*service),
		nextDue:       math.MinInt64,
		repair:        make(map[key]struct{}),
		repairIndexes: make(map[string]struct{}),
		tokens:        newTokenState(),
	}
	if err := s.load(); err != nil {
		_ = db.Close() // the load error is the one worth reporting
		return nil, err
	}
	s.wg.Add(2)
	go s.commitLoop()
	go s.flushLoop()
	return s, nil
}

// openDB opens the bbolt file. bbolt may panic on a damaged file instead of
// returning an error; that panic becomes ErrInvalid.
func openDB(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", bolterrors.ErrInvalid, r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// The free list is written with every commit. Not writing it would
		// make commits a little cheaper, but then bbolt rebuilds it on open
		// by walking the file in a goroutine of its own, where a damaged
		// page is a panic that nothing can recover.
		FreelistType: bolt.FreelistMapType,
	})
}

// load checks the file, creates the buckets of a new file (and those that
// a file of an earlier release lacks), and reads every service, instance
// and token into memory.
func (s *Store) load() error {
	// Check the whole file before the first write: a write on a damaged
	// file could spread the damage.
	if err := s.view(checkFile); err != nil {
		return s.corrupt(err)
	}
	var layout error
	err := s.db.Update(func(tx *bolt.Tx) error {
		layout = initBuckets(tx)
		return layout
	})
	if layout != nil {
		return s.corrupt(layout)
	}
	if err != nil {
		return fmt.Errorf("prepare data file %s: %w", s.path, err)
	}
	if err := s.view(s.loadTx); err != nil {
		return s.corrupt(err)
	}
	if err := s.view(s.loadTokens); err != nil {
		return s.corrupt(err)
	}
	return nil
}

func (s *Store) corrupt(err error) error {
	return fmt.Errorf("%w %s: %w", ErrCorrupt, s.path, err)
}

// view runs fn in a read transaction. bbolt panics on some kinds of damage
// instead of returning an error; view turns such a panic into an error.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return s.db.View(fn)
}

// checkFile runs bbolt's consistency check: every page reachable once, the
// free list sound.
func checkFile(tx *bolt.Tx) error {
	var problem error
	for err := range tx.Check() { // drain it all: Check's goroutine sends each
		if problem == nil {
			problem = err
		}
	}
	return problem
}

// loadTx reads every service and instance into memory.
func (s *Store) loadTx(tx *bolt.Tx) error {
	err := tx.Bucket(bucketServices).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("service %q: index is %d bytes, want 8", k, len(v))
		}
		s.services[string(k)] = &service{index: beUint64(v), instances: make(map[string]entry)}
		return nil
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketInstances).ForEach(func(k, v []byte) error {
		name, id, ok := splitKey(k)
		if !ok {
			return fmt.Errorf("instance key %q has no service", k)
		}
		svc := s.services[name]
		if svc == nil {
			return fmt.Errorf("instance %s/%s: service has no index", name, id)
		}
		e, err := parseEntry(v)
		if err != nil {
			return fmt.Errorf("instance %s/%s: %w", name, id, err)
		}
		svc.instances[id] = e
		return nil
	})
}

func initBuckets(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return errors.New("not a saga data file")
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
	}
	if v := string(meta.Get(keyFormat)); v != formatVersion {
		return fmt.Errorf("data format %q, this saga reads %q", v, formatVersion)
	}
	// A bucket added since format 1 is created here in an older file too:
	// an earlier release ignores the buckets it does not know.
	for _, name := range [][]byte{bucketServices, bucketInstances, bucketTokens} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Register stores in, replacing an instance with the same id. The previous
// instance counts as expired if its deadline is not after in.RegisteredAt.
func (s *Store) Register(ctx context.Context, in registry.Instance) (registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return registry.Event{}, err
	}
	if err := registry.ValidateStored(in); err != nil {
		return registry.Event{}, err
	}
	// Decoding the record before storing it proves that a restart can load
	// it: nothing unreadable ever reaches the file.
	e := newEntry(in)
	out, err := e.instance(in.Service, in.ID)
	if err != nil {
		return registry.Event{}, fmt.Errorf("instance %s/%s cannot be stored: %w", in.Service, in.ID, err)
	}

	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return registry.Event{}, err
	}
	k := key{in.Service, in.ID}
	typ := registry.EventRegistered
	if old, ok := s.current(k); ok && old.expiresAt > unixNano(in.RegisteredAt) {
		typ = registry.EventUpdated
	}
	index := s.nextIndex(in.Service)
	ev := registry.Event{Type: typ, Service: in.Service, Instance: out, Index: index}
	b := s.queue()
	b.put(k, e, index, ev)
	s.nextDue = min(s.nextDue, e.expiresAt)
	s.mu.Unlock()

	if err := b.wait(); err != nil {
		return registry.Event{}, err
	}
	return ev, nil
}

// Heartbeat renews a deadline in memory; only a status change is written.
//
// A plain heartbeat renews every version of the instance that is alive:
// the committed one, and the one in any batch not yet on disk (so that the
// batch, once written, does not bring back an older deadline). When the
// instance is committed, the heartbeat answers at once; when it exists only
// in a batch not yet on disk (its registration has not been answered yet),
// the heartbeat waits for that batch and fails with it.
func (s *Store) Heartbeat(ctx context.Context, name, id string, status registry.Status, now time.Time) (registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return registry.Event{}, err
	}
	if err := registry.ValidateStatus(status); err != nil {
		return registry.Event{}, err
	}
	nowNano := now.UnixNano()
	k := key{name, id}

	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return registry.Event{}, err
	}
	svc := s.services[name]
	var ce entry // the committed version
	var committed bool
	if svc != nil {
		ce, committed = svc.instances[id]
	}
	committed = committed && ce.expiresAt > nowNano
	e, ok := ce, committed
	if s.pendingChange(k) {
		e, ok = s.current(k)
	}
	if !ok || e.expiresAt <= nowNano {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, registry.ErrNotFound)
	}

	if status != "" && status != e.status {
		e.lastHeartbeat = nowNano
		e.expiresAt = now.Add(e.ttl()).UnixNano()
		e.status = status
		e.dirty = false // the record carries the deadline too
		in, err := e.instance(name, id)
		if err != nil {
			s.mu.Unlock()
			return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, err)
		}
		index := s.nextIndex(name)
		ev := registry.Event{Type: registry.EventUpdated, Service: name, Instance: in, Index: index}
		b := s.queue()
		b.put(k, e, index, ev)
		s.mu.Unlock()
		if err := b.wait(); err != nil {
			return registry.Event{}, err
		}
		return ev, nil
	}

	var (
		ev       registry.Event
		newest   *batch // the newest batch holding the instance
		newestEv registry.Event
	)
	if committed {
		ce = renew(ce, now)
		in, err := ce.instance(name, id)
		if err != nil {
			s.mu.Unlock()
			return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, err)
		}
		svc.instances[id] = ce
		ev = registry.Event{Type: registry.EventHeartbeat, Service: name, Instance: in, Index: svc.index}
		s.feed.Emit(ev)
	}
	for _, b := range [2]*batch{s.writing, s.pending} { // oldest first
		if b == nil {
			continue
		}
		c, ok := b.changes[k]
		if !ok || c.deleted || c.e.expiresAt <= nowNano {
			continue
		}
		c.e = renew(c.e, now)
		in, err := c.e.instance(name, id)
		if err != nil {
			continue // cannot happen: the batch decoded it already
		}
		b.changes[k] = c
		// Sent after the batch's own event for the instance, once on disk.
		hb := registry.Event{Type: registry.EventHeartbeat, Service: name, Instance: in, Index: b.indexes[name]}
		b.events = append(b.events, hb)
		newest, newestEv = b, hb
	}
	s.mu.Unlock()

	if committed {
		return ev, nil
	}
	if newest == nil { // cannot happen: current found it alive in a batch
		return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, registry.ErrNotFound)
	}
	if err := newest.wait(); err != nil {
		return registry.Event{}, err
	}
	return newestEv, nil
}

// renew moves e's deadline to now + its TTL, for the lazy flush to write.
func renew(e entry, now time.Time) entry {
	e.lastHeartbeat = now.UnixNano()
	e.expiresAt = now.Add(e.ttl()).UnixNano()
	e.dirty = true
	return e
}

// Deregister removes an instance.
func (s *Store) Deregister(ctx context.Context, name, id string) (registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return registry.Event{}, err
	}
	k := key{name, id}
	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return registry.Event{}, err
	}
	e, ok := s.current(k)
	if !ok {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("deregister %s/%s: %w", name, id, registry.ErrNotFound)
	}
	in, err := e.instance(name, id)
	if err != nil {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("deregister %s/%s: %w", name, id, err)
	}
	index := s.nextIndex(name)
	ev := registry.Event{Type: registry.EventDeregistered, Service: name, Instance: in, Index: index}
	b := s.queue()
	b.remove(k, index, ev)
	s.mu.Unlock()

	if err := b.wait(); err != nil {
		return registry.Event{}, err
	}
	return ev, nil
}

// ExpireDue removes every instance whose deadline is not after now.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nowNano := now.UnixNano()

	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if nowNano < s.nextDue {
		s.mu.Unlock()
		return nil, nil
	}
	next := int64(math.MaxInt64)
	var due []key
	look := func(k key, e entry) {
		if e.expiresAt > nowNano {
			next = min(next, e.expiresAt)
		} else {
			due = append(due, k)
		}
	}
	// Every instance in its newest state: committed ones that no pending
	// batch touches, then what the batches hold.
	for name, svc := range s.services {
		for id, e := range svc.instances {
			if k := (key{name, id}); !s.pendingChange(k) {
				look(k, e)
			}
		}
	}
	for i, b := range s.overlays() {
		if b == nil {
			continue
		}
		for k, c := range b.changes {
			if c.deleted {
				continue
			}
			if i == 1 && s.pending != nil { // writing: the newer pending batch may override it
				if _, ok := s.pending.changes[k]; ok {
					continue
				}
			}
			look(k, c.e)
		}
	}
	s.nextDue = next
	if len(due) == 0 {
		s.mu.Unlock()
		return nil, nil
	}
	events := make([]registry.Event, 0, len(due))
	b := s.queue()
	for _, k := range due {
		e, _ := s.current(k)
		in, err := e.instance(k.service, k.id)
		if err != nil {
			// Memory holds only what encodeStatic or parseEntry built,
			// so this cannot happen; expire it all the same.
			s.logger.Error("instance record unreadable", "service", k.service, "id", k.id, "err", err)
			in = registry.Instance{Service: k.service, ID: k.id}
		}
		// One service's events are queued in index order, as Changes
		// promises; map order only interleaves services.
		index := s.nextIndex(k.service)
		ev := registry.Event{Type: registry.EventExpired, Service: k.service, Instance: in, Index: index}
		b.remove(k, index, ev)
		events = append(events, ev)
	}
	s.mu.Unlock()

	if err := b.wait(); err != nil {
		return nil, err
	}
	return events, nil
}

// GrantGrace moves every deadline earlier than now + TTL to now + TTL. The
// new deadlines reach the disk with the next lazy flush.
func (s *Store) GrantGrace(ctx context.Context, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	s.grantGrace(now)
	return nil
}

// grantGrace moves deadlines, committed and pending, to at least now + TTL.
// Callers hold mu.
func (s *Store) grantGrace(now time.Time) {
	grace := func(e entry) (entry, bool) {
		if deadline := now.Add(e.ttl()).UnixNano(); e.expiresAt < deadline {
			e.expiresAt = deadline
			e.dirty = true
			return e, true
		}
		return e, false
	}
	for _, svc := range s.services {
		for id, e := range svc.instances {
			if e, moved := grace(e); moved {
				svc.instances[id] = e
			}
		}
	}
	for _, b := range s.overlays() {
		if b == nil {
			continue
		}
		for k, c := range b.changes {
			if c.deleted {
				continue
			}
			if e, moved := grace(c.e); moved {
				b.changes[k] = change{e: e}
			}
		}
	}
}

// Snapshot returns every service with its index and instances, sorted by id.
func (s *Store) Snapshot(ctx context.Context) (registry.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return registry.Snapshot{}, err
	}
	type copied struct {
		index   uint64
		ids     []string
		entries []entry
	}
	// Copy under the lock, decode outside it: entries' static bytes are
	// never modified, so heartbeats need not wait for the decoding.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return registry.Snapshot{}, errClosed
	}
	all := make(map[string]copied, len(s.services))
	for name, svc := range s.services {
		c := copied{index: svc.index, ids: make([]string, 0, len(svc.instances)), entries: make([]entry, 0, len(svc.instances))}
		for id, e := range svc.instances {
			c.ids = append(c.ids, id)
			c.entries = append(c.entries, e)
		}
		all[name] = c
	}
	s.mu.Unlock()

	snap := registry.Snapshot{Services: make(map[string]registry.ServiceSnapshot, len(all))}
	for name, c := range all {
		instances := make([]registry.Instance, len(c.ids))
		for i, id := range c.ids {
			in, err := c.entries[i].instance(name, id)
			if err != nil {
				return registry.Snapshot{}, fmt.Errorf("snapshot %s/%s: %w", name, id, err)
			}
			instances[i] = in
		}
		slices.SortFunc(instances, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
		snap.Services[name] = registry.ServiceSnapshot{Index: c.index, Instances: instances}
	}
	return snap, nil
}

// Changes is the feed of events. It is closed by Close.
func (s *Store) Changes() <-chan registry.Event { return s.feed.C() }

// Ping reports ErrUnavailable once the store is closed, and while writes
// fail (until the probe finds the disk writable again).
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writable()
}

// Close writes the deadlines that heartbeats moved, waits for pending
// writes, closes the file and the Changes feed. A second Close does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	var last *batch
	if s.failed == nil {
		last = s.queueDirty()
	}
	close(s.kick) // the committer writes what is pending, then returns
	s.mu.Unlock()

	s.wg.Wait() // the committer sends the events of the last batches
	var err error
	if last != nil {
		err = last.wait()
	}
	s.mu.Lock()
	s.feed.Close()
	db := s.db
	s.mu.Unlock()
	if db != nil {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close data file: %w", cerr))
		}
	}
	return err
}

// writable reports why the store refuses changes, if it does. Callers hold mu.
func (s *Store) writable() error {
	if s.closed {
		return errClosed
	}
	if s.failed != nil {
		return fmt.Errorf("writes are refused until the disk takes them again (%w): %w", s.failed, registry.ErrUnavailable)
	}
	return nil
}

// service returns the named service, creating it. Callers hold mu.
func (s *Store) service(name string) *service {
	svc := s.services[name]
	if svc == nil {
		svc = &service{instances: make(map[string]entry)}
		s.services[name] = svc
	}
	return svc
}
