// Package embedded is Saga's default registry.Store: one node, no set-up,
// kept in a bbolt file in the data directory.
//
// Memory is the working copy and disk the durable one. Every change that
// moves an index (register, deregister, expiry, status change) is written
// and fsynced before the call returns; concurrent changes share one fsync
// (group commit). Heartbeats that only move a deadline change memory alone;
// deadlines reach the disk every few seconds and at Close, and after a crash
// the daemon's start-up grace (Store.GrantGrace) covers the stale ones.
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
	// changesBuffer is how many events wait for the Changes reader before
	// the store starts dropping them (and later sends EventResync).
	changesBuffer = 4096
)

var (
	// ErrInUse: another process holds the data file's lock.
	ErrInUse = errors.New("in use by another saga process")
	// ErrCorrupt: the data file is damaged or is not a Saga data file.
	ErrCorrupt = errors.New("corrupt data file")

	errClosed = fmt.Errorf("store is closed: %w", registry.ErrUnavailable)
)

// Bucket names: the on-disk layout, described in docs/storage.md.
var (
	bucketMeta      = []byte("meta")      // "format" → formatVersion
	bucketServices  = []byte("services")  // service name → index, 8 bytes big-endian
	bucketInstances = []byte("instances") // service + 0x00 + id → record (record.go)
	keyFormat       = []byte("format")
)

const formatVersion = "1"

var _ registry.Store = (*Store)(nil)

// Store is the embedded registry store. Its methods are safe for concurrent use.
type Store struct {
	db      *bolt.DB
	path    string
	logger  *slog.Logger
	changes chan registry.Event

	kick chan struct{} // wakes the committer; closed by Close
	stop chan struct{} // stops the flusher; closed by Close
	wg   sync.WaitGroup

	mu       sync.Mutex
	services map[string]*service
	// nextDue is at or before the earliest deadline in memory, so that
	// ExpireDue skips its scan until something can be due.
	nextDue    int64
	pending    *batch // writes not yet taken by the committer
	lostEvents bool   // Changes dropped events; EventResync is owed
	failed     error  // a write failed: memory is ahead of disk, so writes stop
	closed     bool
}

type service struct {
	index     uint64
	instances map[string]entry
}

// Open opens the store in dir, creating the directory (mode 0700) and the
// data file as needed. A directory that cannot be used, a file locked by
// another process (ErrInUse) or a damaged file (ErrCorrupt) is an error.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	return open(dir, logger, options{flushInterval: flushInterval, changesBuffer: changesBuffer})
}

// options are the tunables that tests shrink.
type options struct {
	flushInterval time.Duration
	changesBuffer int
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
	s := &Store{
		db:       db,
		path:     path,
		logger:   logger.With("component", "store", "path", path),
		changes:  make(chan registry.Event, opts.changesBuffer),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		services: make(map[string]*service),
		nextDue:  math.MinInt64,
	}
	if err := s.load(); err != nil {
		_ = db.Close() // the load error is the one worth reporting
		return nil, err
	}
	s.wg.Add(2)
	go s.commitLoop()
	go s.flushLoop(opts.flushInterval)
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

// load checks the file, creates the buckets of a new file, and reads every
// service and instance into memory.
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
	for _, name := range [][]byte{bucketServices, bucketInstances} {
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
	if err := checkInstance(in); err != nil {
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
	svc := s.service(in.Service)
	typ := registry.EventRegistered
	if old, ok := svc.instances[in.ID]; ok && old.expiresAt > unixNano(in.RegisteredAt) {
		typ = registry.EventUpdated
	}
	svc.index++
	svc.instances[in.ID] = e
	s.nextDue = min(s.nextDue, e.expiresAt)
	ev := registry.Event{Type: typ, Service: in.Service, Instance: out, Index: svc.index}
	b := s.enqueue(putInstance(in.Service, in.ID, e), putIndex(in.Service, svc.index))
	s.emit(ev)
	s.mu.Unlock()

	return ev, b.wait()
}

// checkInstance refuses what would break the key layout or expire at once.
// The API validates requests before they get here; this guards other callers.
func checkInstance(in registry.Instance) error {
	if err := registry.ValidateName("service", in.Service); err != nil {
		return err
	}
	if err := registry.ValidateName("id", in.ID); err != nil {
		return err
	}
	if in.TTLSeconds < registry.MinTTLSeconds || in.TTLSeconds > registry.MaxTTLSeconds {
		return &registry.FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("%d is out of range %d-%d", in.TTLSeconds, registry.MinTTLSeconds, registry.MaxTTLSeconds)}
	}
	if !in.Status.Valid() {
		return &registry.FieldError{Field: "status", Message: fmt.Sprintf("%q must be passing, warning or critical", in.Status)}
	}
	return nil
}

// Heartbeat renews a deadline in memory; only a status change is written.
func (s *Store) Heartbeat(ctx context.Context, name, id string, status registry.Status, now time.Time) (registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return registry.Event{}, err
	}
	if err := registry.ValidateStatus(status); err != nil {
		return registry.Event{}, err
	}
	nowNano := now.UnixNano()

	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return registry.Event{}, err
	}
	svc := s.services[name]
	var e entry
	var ok bool
	if svc != nil {
		e, ok = svc.instances[id]
	}
	if !ok || e.expiresAt <= nowNano {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, registry.ErrNotFound)
	}
	e.lastHeartbeat = nowNano
	e.expiresAt = now.Add(e.ttl()).UnixNano()
	ev := registry.Event{Type: registry.EventHeartbeat, Service: name, Index: svc.index}
	var b *batch
	if status != "" && status != e.status {
		e.status = status
		e.dirty = false // the record below carries the deadline too
		svc.index++
		ev.Type, ev.Index = registry.EventUpdated, svc.index
		b = s.enqueue(putInstance(name, id, e), putIndex(name, svc.index))
	} else {
		e.dirty = true
	}
	svc.instances[id] = e
	var err error
	ev.Instance, err = e.instance(name, id)
	if err != nil {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("heartbeat %s/%s: %w", name, id, err)
	}
	s.emit(ev)
	s.mu.Unlock()

	if b != nil {
		return ev, b.wait()
	}
	return ev, nil
}

// Deregister removes an instance.
func (s *Store) Deregister(ctx context.Context, name, id string) (registry.Event, error) {
	if err := ctx.Err(); err != nil {
		return registry.Event{}, err
	}
	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return registry.Event{}, err
	}
	svc := s.services[name]
	var e entry
	var ok bool
	if svc != nil {
		e, ok = svc.instances[id]
	}
	if !ok {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("deregister %s/%s: %w", name, id, registry.ErrNotFound)
	}
	in, err := e.instance(name, id)
	if err != nil {
		s.mu.Unlock()
		return registry.Event{}, fmt.Errorf("deregister %s/%s: %w", name, id, err)
	}
	delete(svc.instances, id)
	svc.index++
	ev := registry.Event{Type: registry.EventDeregistered, Service: name, Instance: in, Index: svc.index}
	b := s.enqueue(deleteInstance(name, id), putIndex(name, svc.index))
	s.emit(ev)
	s.mu.Unlock()

	return ev, b.wait()
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
	var events []registry.Event
	var ops []op
	next := int64(math.MaxInt64)
	for name, svc := range s.services {
		for id, e := range svc.instances {
			if e.expiresAt > nowNano {
				next = min(next, e.expiresAt)
				continue
			}
			in, err := e.instance(name, id)
			if err != nil {
				// Memory holds only what encodeStatic or parseEntry built,
				// so this cannot happen; expire it all the same.
				s.logger.Error("instance record unreadable", "service", name, "id", id, "err", err)
				in = registry.Instance{Service: name, ID: id}
			}
			// One service's events are appended in index order, as
			// Changes promises; map order only interleaves services.
			delete(svc.instances, id)
			svc.index++
			events = append(events, registry.Event{Type: registry.EventExpired, Service: name, Instance: in, Index: svc.index})
			ops = append(ops, deleteInstance(name, id), putIndex(name, svc.index))
		}
	}
	s.nextDue = next
	if len(events) == 0 {
		s.mu.Unlock()
		return nil, nil
	}
	b := s.enqueue(ops...)
	for _, ev := range events {
		s.emit(ev)
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
	for _, svc := range s.services {
		for id, e := range svc.instances {
			if deadline := now.Add(e.ttl()).UnixNano(); e.expiresAt < deadline {
				e.expiresAt = deadline
				e.dirty = true
				svc.instances[id] = e
			}
		}
	}
	return nil
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
func (s *Store) Changes() <-chan registry.Event { return s.changes }

// Ping reports ErrUnavailable once the store is closed or a write failed.
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
		last = s.enqueueDirty()
	}
	close(s.kick) // the committer writes what is pending, then returns
	close(s.changes)
	s.mu.Unlock()

	s.wg.Wait()
	var err error
	if last != nil {
		err = last.wait()
	}
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close data file: %w", cerr))
	}
	return err
}

// writable reports why the store refuses changes, if it does. Callers hold mu.
func (s *Store) writable() error {
	if s.closed {
		return errClosed
	}
	if s.failed != nil {
		return fmt.Errorf("an earlier write failed (%w): %w", s.failed, registry.ErrUnavailable)
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

// emit hands ev to the Changes reader without ever blocking. Callers hold
// mu, so events leave in the order their indexes were given.
func (s *Store) emit(ev registry.Event) {
	if s.lostEvents {
		select {
		case s.changes <- registry.Event{Type: registry.EventResync}:
			s.lostEvents = false
		default:
			return // still full; ev is lost too, the resync covers it
		}
	}
	select {
	case s.changes <- ev:
	default:
		s.lostEvents = true
	}
}
