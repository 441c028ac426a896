package embedded

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaproject/saga/pkg/registry"
)

// Group commit: writers change memory under the store's lock and append their
// disk writes to the pending batch; one committer goroutine writes each batch
// in a single bbolt transaction (one fsync) and wakes everyone waiting on it.
// While one batch is being written, the next one fills up, so 32 concurrent
// clients share a handful of fsyncs instead of paying for 32.

// op is one write: a put, or a delete when value is nil.
type op struct {
	bucket []byte
	key    []byte
	value  []byte
}

// batch is the writes of many callers, committed together.
type batch struct {
	ops  []op
	done chan struct{} // closed once the batch is on disk, or failed
	err  error         // read only after done is closed
}

// wait blocks until the batch is on disk. It ignores the caller's context:
// the change is already in memory and on the feed, so the caller must learn
// whether it is durable.
func (b *batch) wait() error {
	<-b.done
	return b.err
}

// enqueue adds ops to the pending batch and wakes the committer. Callers hold mu.
func (s *Store) enqueue(ops ...op) *batch {
	if s.pending == nil {
		s.pending = &batch{done: make(chan struct{})}
	}
	s.pending.ops = append(s.pending.ops, ops...)
	select {
	case s.kick <- struct{}{}:
	default: // the committer is already due to look
	}
	return s.pending
}

// enqueueDirty queues the records whose deadlines heartbeats moved, or
// returns nil when there are none. Callers hold mu.
func (s *Store) enqueueDirty() *batch {
	var ops []op
	for name, svc := range s.services {
		for id, e := range svc.instances {
			if !e.dirty {
				continue
			}
			e.dirty = false
			svc.instances[id] = e
			ops = append(ops, putInstance(name, id, e))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return s.enqueue(ops...)
}

// commitLoop writes batches until Close closes kick, then writes the last one.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	for {
		_, open := <-s.kick
		s.mu.Lock()
		b := s.pending
		s.pending = nil
		s.mu.Unlock()
		if b != nil {
			s.commit(b)
		}
		if !open {
			return
		}
	}
}

func (s *Store) commit(b *batch) {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	if failed != nil { // after a failed batch, later ones would write on a gap
		b.err = failed
		close(b.done)
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
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
	if err != nil {
		// Memory already holds these changes and the feed has sent them;
		// disk does not. Refuse further writes rather than let the two
		// drift apart: a restart reloads what the disk has.
		err = fmt.Errorf("write %s: %w: %w", s.path, registry.ErrUnavailable, err)
		s.mu.Lock()
		if s.failed == nil {
			s.failed = err
			s.logger.Error("writing the data file failed; refusing further changes until restart", "err", err)
		}
		s.mu.Unlock()
	}
	b.err = err
	close(b.done)
}

// flushLoop writes moved deadlines every interval until Close. Retrying an
// owed EventResync here means a reader that fell behind learns of it even
// when no further change comes.
func (s *Store) flushLoop(interval time.Duration) {
	defer s.wg.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
		}
		s.mu.Lock()
		if s.writable() == nil {
			s.enqueueDirty()
			if s.lostEvents {
				select {
				case s.changes <- registry.Event{Type: registry.EventResync}:
					s.lostEvents = false
				default:
				}
			}
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
