package embedded

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sagaproject/saga/pkg/registry"
)

// Group commit: a writer computes its change against the newest state (the
// committed memory with the pending batches laid over it), records it in
// the batch that is filling up, and waits; one committer goroutine writes
// each batch in a single bbolt transaction (one fsync). Only once that
// transaction has committed does the batch's change reach the committed
// memory, which Snapshot reads, and its events reach Changes. While one
// batch is being written the next one fills up, so 32 concurrent clients
// share a handful of fsyncs instead of paying for 32.
//
// A batch that fails to commit is thrown away together with the batch
// computed on top of it, and the store stops taking writes until a probe
// in the flush loop finds the disk writable again (see probe).

// op is one write: a put, or a delete when value is nil.
type op struct {
	bucket []byte
	key    []byte
	value  []byte
}

// key names one instance.
type key struct{ service, id string }

// change is an instance's newest state inside a batch: a record, or its removal.
type change struct {
	e       entry
	deleted bool
}

// batch is the writes of many callers, committed together, and the
// overlay that they make on the committed memory.
type batch struct {
	ops     []op
	changes map[key]change    // instances the batch sets or removes, newest state
	indexes map[string]uint64 // services whose index the batch moves, newest index
	events  []registry.Event  // sent on Changes once the batch is on disk, in this order
	flushed []key             // committed records queued only for their moved deadline
	done    chan struct{}     // closed once the batch is on disk, or failed
	err     error             // read only after done is closed
}

func newBatch() *batch {
	return &batch{
		changes: make(map[key]change),
		indexes: make(map[string]uint64),
		done:    make(chan struct{}),
	}
}

// wait blocks until the batch is on disk, or has failed. It ignores the
// caller's context: once queued, a change is written or refused as a
// whole, and the caller must learn which.
func (b *batch) wait() error {
	<-b.done
	return b.err
}

// put records that the batch stores e as service/id at the service's new
// index, with the event that announces it. Callers hold mu.
func (b *batch) put(k key, e entry, index uint64, ev registry.Event) {
	b.changes[k] = change{e: e}
	b.indexes[k.service] = index
	b.events = append(b.events, ev)
	b.ops = append(b.ops, putInstance(k.service, k.id, e), putIndex(k.service, index))
}

// remove records that the batch removes service/id. Callers hold mu.
func (b *batch) remove(k key, index uint64, ev registry.Event) {
	b.changes[k] = change{deleted: true}
	b.indexes[k.service] = index
	b.events = append(b.events, ev)
	b.ops = append(b.ops, deleteInstance(k.service, k.id), putIndex(k.service, index))
}

// queue returns the batch that is filling up, creating it, and wakes the
// committer. Callers hold mu and add their change before they let go of it.
func (s *Store) queue() *batch {
	if s.pending == nil {
		s.pending = newBatch()
	}
	select {
	case s.kick <- struct{}{}:
	default: // the committer is already due to look
	}
	return s.pending
}

// overlays are the batches not yet on disk, newest first. Callers hold mu.
func (s *Store) overlays() [2]*batch { return [2]*batch{s.pending, s.writing} }

// current returns the newest state of an instance: the last pending
// change to it, else the committed memory. Callers hold mu.
func (s *Store) current(k key) (entry, bool) {
	for _, b := range s.overlays() {
		if b == nil {
			continue
		}
		if c, ok := b.changes[k]; ok {
			return c.e, !c.deleted
		}
	}
	if svc := s.services[k.service]; svc != nil {
		e, ok := svc.instances[k.id]
		return e, ok
	}
	return entry{}, false
}

// pendingChange reports whether a batch not yet on disk touches k. Callers hold mu.
func (s *Store) pendingChange(k key) bool {
	for _, b := range s.overlays() {
		if b != nil {
			if _, ok := b.changes[k]; ok {
				return true
			}
		}
	}
	return false
}

// nextIndex returns the index that the next change to a service takes:
// one above the newest, pending or committed. Callers hold mu.
func (s *Store) nextIndex(service string) uint64 {
	for _, b := range s.overlays() {
		if b == nil {
			continue
		}
		if index, ok := b.indexes[service]; ok {
			return index + 1
		}
	}
	if svc := s.services[service]; svc != nil {
		return svc.index + 1
	}
	return 1
}

// queueDirty queues the committed records whose deadlines heartbeats
// moved, or returns nil when there are none. A record that a pending batch
// rewrites is left to that batch (its deadline was renewed there too), and
// stays dirty in case the batch fails. Callers hold mu.
func (s *Store) queueDirty() *batch {
	var b *batch
	for name, svc := range s.services {
		for id, e := range svc.instances {
			if !e.dirty || s.pendingChange(key{name, id}) {
				continue
			}
			if b == nil {
				b = s.queue()
			}
			e.dirty = false
			svc.instances[id] = e
			b.ops = append(b.ops, putInstance(name, id, e))
			b.flushed = append(b.flushed, key{name, id})
		}
	}
	return b
}

// commitLoop writes batches until Close closes kick, then writes the last one.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	for {
		_, open := <-s.kick
		s.mu.Lock()
		b, db := s.pending, s.db
		s.pending, s.writing = nil, b
		s.mu.Unlock()
		if b != nil {
			s.commit(db, b)
		}
		if !open {
			return
		}
	}
}

// commit writes b. On success the batch's overlay becomes committed memory
// and its events go out; on failure b and the batch computed on top of it
// are thrown away, every caller of either gets the error, and the store
// refuses writes until the probe finds the disk writable again.
func (s *Store) commit(db *bolt.DB, b *batch) {
	err := s.update(db, func(tx *bolt.Tx) error {
		for _, o := range b.ops {
			bucket := tx.Bucket(o.bucket)
			var err error
			if o.value == nil {
				err = bucket.Delete(o.key)
			} else {
				err = bucket.Put(o.key, o.value)
			}
			if err != nil {
				return fmt.Errorf("%s %q: %w", o.bucket, o.key, err)
			}
		}
		return nil
	})

	s.mu.Lock()
	s.writing = nil
	if err == nil {
		s.apply(b)
		s.mu.Unlock()
		close(b.done)
		return
	}
	err = fmt.Errorf("write data file: %w: %w", registry.ErrUnavailable, err)
	discarded := []*batch{b}
	if s.pending != nil { // computed on top of b: it would write on a gap
		discarded = append(discarded, s.pending)
		s.pending = nil
	}
	for _, d := range discarded {
		s.discard(d)
	}
	if s.failed == nil {
		s.failed, s.failedAt = err, s.opts.clock.Now()
		s.logger.Error("writing the data file failed; refusing changes until the disk takes writes again", "err", err)
	}
	s.mu.Unlock()
	for _, d := range discarded {
		d.err = err
		close(d.done)
	}
}

// update runs fn in a write transaction: the store's one way to write.
func (s *Store) update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	if db == nil {
		return bolterrors.ErrDatabaseNotOpen
	}
	return db.Update(func(tx *bolt.Tx) error {
		if s.opts.writeHook != nil {
			if err := s.opts.writeHook(); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// apply makes a committed batch's overlay the committed memory and sends
// its events. Callers hold mu.
func (s *Store) apply(b *batch) {
	for k, c := range b.changes {
		svc := s.service(k.service)
		if c.deleted {
			delete(svc.instances, k.id)
		} else {
			svc.instances[k.id] = c.e
		}
	}
	for name, index := range b.indexes {
		s.service(name).index = index
	}
	for _, ev := range b.events {
		s.feed.Emit(ev)
	}
}

// discard forgets a batch that will not be written. Nobody saw its changes;
// what it may have left in the file is noted for the probe to repair.
// Callers hold mu.
func (s *Store) discard(b *batch) {
	for k := range b.changes {
		s.repair[k] = struct{}{}
	}
	for name := range b.indexes {
		s.repairIndexes[name] = struct{}{}
	}
	for _, k := range b.flushed {
		s.repair[k] = struct{}{}
		if svc := s.services[k.service]; svc != nil {
			if e, ok := svc.instances[k.id]; ok {
				e.dirty = true
				svc.instances[k.id] = e
			}
		}
	}
	// An expiry that failed left its instances in memory, and the scan
	// that found them moved nextDue past them: scan again.
	s.nextDue = math.MinInt64
}

// probeBytes is the size of the value that the probe writes and deletes
// again. A smaller write could fit in pages that bbolt already holds free
// inside the file and succeed on a disk that is still full, so that the
// store would flap between taking and refusing writes; once this much has
// been written, the freed pages are room for the writes that follow.
const probeBytes = 1 << 20

// probe runs while writes fail. Its first transaction puts back the
// committed memory's records for everything the failed batches touched (a
// failed commit should leave nothing behind, but an I/O error on a sync
// cannot promise that) and writes probeBytes of random bytes (a compressing
// file system cannot shrink them) under keyProbe; its second deletes them.
// Once both commit, the store takes writes again.
func (s *Store) probe() {
	s.mu.Lock()
	if s.failed == nil || s.closed {
		s.mu.Unlock()
		return
	}
	db := s.db
	ops := make([]op, 0, len(s.repair)+len(s.repairIndexes)+2)
	ops = append(ops, op{bucket: bucketMeta, key: keyFormat, value: []byte(formatVersion)})
	for k := range s.repair {
		if svc := s.services[k.service]; svc != nil {
			if e, ok := svc.instances[k.id]; ok {
				ops = append(ops, putInstance(k.service, k.id, e))
				continue
			}
		}
		ops = append(ops, deleteInstance(k.service, k.id))
	}
	for name := range s.repairIndexes {
		if svc := s.services[name]; svc != nil {
			ops = append(ops, putIndex(name, svc.index))
		} else {
			ops = append(ops, op{bucket: bucketServices, key: []byte(name)})
		}
	}
	s.mu.Unlock()

	ballast := make([]byte, probeBytes)
	_, _ = rand.Read(ballast) // never fails
	ops = append(ops, op{bucket: bucketMeta, key: keyProbe, value: ballast})
	err := s.update(db, func(tx *bolt.Tx) error {
		for _, o := range ops {
			bucket := tx.Bucket(o.bucket)
			var err error
			if o.value == nil {
				err = bucket.Delete(o.key)
			} else {
				err = bucket.Put(o.key, o.value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.update(db, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyProbe) })
	}
	if errors.Is(err, bolterrors.ErrInvalidMapping) || errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		// bbolt lost its memory map (a failed grow of the mapping): only
		// opening the file again makes it usable. The next probe writes.
		s.reopen(db)
		return
	}
	if err != nil {
		s.logger.Debug("the data file still refuses writes", "err", err)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	// Self-preservation: heartbeats were refused while writes failed, so
	// every instance gets one full TTL before anything can expire; the
	// grace is granted before the store takes writes, so no ExpireDue
	// comes in between.
	s.grantGrace(s.opts.clock.Now())
	s.nextDue = math.MinInt64
	clear(s.repair)
	clear(s.repairIndexes)
	down := s.opts.clock.Now().Sub(s.failedAt)
	s.failed = nil
	s.logger.Warn("writing the data file works again; every instance got one TTL of grace", "down", down.Round(time.Millisecond))
	// Readers froze expiry while the store was failing: they reload the
	// snapshot to pick up the new deadlines.
	s.feed.Resync()
}

// reopen closes the bbolt file and opens it again, for a handle that
// bbolt can no longer use.
func (s *Store) reopen(old *bolt.DB) {
	if old != nil {
		_ = old.Close() // the handle is broken; its close error says nothing new
	}
	db, err := openDB(s.path)
	if err != nil {
		s.logger.Debug("opening the data file again failed", "err", err)
		db = nil
	}
	s.mu.Lock()
	s.db = db
	s.mu.Unlock()
}

// flushLoop writes moved deadlines every flush interval until Close, and
// while writes fail probes the disk every probe interval. Retrying an owed
// EventResync here means a reader that fell behind learns of it even when
// no further change comes.
func (s *Store) flushLoop() {
	defer s.wg.Done()
	flush := time.NewTicker(s.opts.flushInterval)
	defer flush.Stop()
	probe := time.NewTicker(s.opts.probeInterval)
	defer probe.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-probe.C:
			s.probe()
			continue
		case <-flush.C:
		}
		s.mu.Lock()
		if s.writable() == nil {
			s.queueDirty()
			s.feed.Flush()
		}
		s.mu.Unlock()
	}
}

func instanceKey(service, id string) []byte {
	k := make([]byte, 0, len(service)+1+len(id))
	k = append(k, service...)
	k = append(k, 0) // names never hold a zero byte (registry.ValidateName)
	return append(k, id...)
}

func splitKey(k []byte) (service, id string, ok bool) {
	for i, c := range k {
		if c == 0 {
			return string(k[:i]), string(k[i+1:]), i > 0 && i < len(k)-1
		}
	}
	return "", "", false
}

func putInstance(service, id string, e entry) op {
	return op{bucket: bucketInstances, key: instanceKey(service, id), value: e.value()}
}

func deleteInstance(service, id string) op {
	return op{bucket: bucketInstances, key: instanceKey(service, id)}
}

func putIndex(service string, index uint64) op {
	return op{bucket: bucketServices, key: []byte(service), value: binary.BigEndian.AppendUint64(nil, index)}
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
