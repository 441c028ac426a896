package view

import (
	"slices"
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// A big answer's buffer is tens of megabytes, made again at every change
// of its service. Allocated anew each time, those buffers drove the
// garbage collector: its mark phase ran more often and longer, and while
// it ran, every goroutine that allocated, the readers of small services
// too, waited to help it, for up to a second. So a big answer's buffer is
// used again for the next big answer once no reader holds it: the entry
// counts its readers (Answer.Release), and the last of them, or the cache
// dropping the entry after them, hands the buffer back.
//
// An Answer that is never released only keeps its buffer from being used
// again; the garbage collector takes it as before.

// dropped is the bit of cacheEntry.users set once the cache let go of the
// entry (or never kept it): from then on no new reader can take it, and
// the buffer is free when the count below the bit reaches zero.
const dropped = 1 << 62

// spareBuffers holds the buffers of released big answers for the next
// ones to use: at most maxSpares of them, and none left unused for longer
// than spareFor, so a view whose big services went quiet or away lets go
// of them (the periodic reload trims them too).
type spareBuffers struct {
	clock registry.Clock
	mu    sync.Mutex
	list  []spare
}

type spare struct {
	buf   []byte
	since time.Time
}

const (
	maxSpares = bigEncodes
	spareFor  = time.Minute
)

// get returns an empty buffer of at least n bytes: the smallest spare
// that fits, or a new one.
func (s *spareBuffers) get(n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.trimLocked(now)
	best := -1
	for i, sp := range s.list {
		if cap(sp.buf) >= n && (best < 0 || cap(sp.buf) < cap(s.list[best].buf)) {
			best = i
		}
	}
	if best >= 0 {
		buf := s.list[best].buf
		s.list = slices.Delete(s.list, best, best+1)
		return buf
	}
	// Room to grow by an eighth, so that the next encodings of a service
	// that grows fit too.
	return make([]byte, 0, n+n/8)
}

// put keeps buf for a later answer, in place of the smallest spare when
// maxSpares are kept already.
func (s *spareBuffers) put(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.trimLocked(now)
	if len(s.list) == maxSpares {
		smallest := 0
		for i, sp := range s.list {
			if cap(sp.buf) < cap(s.list[smallest].buf) {
				smallest = i
			}
		}
		if cap(buf) <= cap(s.list[smallest].buf) {
			return
		}
		s.list = slices.Delete(s.list, smallest, smallest+1)
	}
	s.list = append(s.list, spare{buf: buf[:0], since: now})
}

// trim lets go of the spares unused for spareFor.
func (s *spareBuffers) trim() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimLocked(s.clock.Now())
}

func (s *spareBuffers) trimLocked(now time.Time) {
	s.list = slices.DeleteFunc(s.list, func(sp spare) bool { return now.Sub(sp.since) >= spareFor })
}

// take counts one more reader of a big entry. Callers hold the view's
// lock (read or write), under which the cache drops entries, so the entry
// cannot be freed between finding it and taking it.
func (e *cacheEntry) take() {
	if e.big {
		e.users.Add(1)
	}
}

// release counts one reader less, and frees the buffer if it was the last
// one of an entry the cache has let go of.
func (e *cacheEntry) release() {
	if e.big && e.users.Add(-1) == dropped {
		e.free()
	}
}

// drop marks a big entry let go of by the cache, and frees its buffer if
// no reader holds it. Callers hold the view's lock.
func (e *cacheEntry) drop() {
	if e.big && e.users.Or(dropped) == 0 {
		e.free()
	}
}

func (e *cacheEntry) free() {
	e.spares.put(e.body)
}
