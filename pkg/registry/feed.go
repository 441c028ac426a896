package registry

import "sync"

// Feed is the change feed a store hands its one reader (Store.Changes). It
// never blocks a writer: when the reader falls behind, events are dropped,
// and an EventResync follows as soon as there is room, so the reader
// reloads a snapshot. Both stores use it.
type Feed struct {
	mu     sync.Mutex
	ch     chan Event
	lost   bool // events were dropped; an EventResync is owed
	closed bool
}

// NewFeed returns a feed that holds up to buffer events for its reader.
func NewFeed(buffer int) *Feed { return &Feed{ch: make(chan Event, buffer)} }

// C is the reader's side.
func (f *Feed) C() <-chan Event { return f.ch }

// Emit hands ev to the reader, or drops it (and owes a resync) when the
// buffer is full. Events emitted by one goroutine arrive in its order.
func (f *Feed) Emit(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.lost && !f.sendResyncLocked() {
		return // still full; ev is lost too, the owed resync covers it
	}
	select {
	case f.ch <- ev:
	default:
		f.lost = true
	}
}

// Resync tells the reader to reload a snapshot: at once when there is
// room, else as soon as a later Emit or Flush finds some.
func (f *Feed) Resync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && !f.sendResyncLocked() {
		f.lost = true
	}
}

// Flush sends an owed EventResync once the reader has made room; call it
// now and then, so that a reader that fell behind learns of it even when
// no further change comes.
func (f *Feed) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && f.lost {
		f.sendResyncLocked()
	}
}

// Close closes the reader's side; later events are dropped.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
}

func (f *Feed) sendResyncLocked() bool {
	select {
	case f.ch <- Event{Type: EventResync}:
		f.lost = false
		return true
	default:
		return false
	}
}
