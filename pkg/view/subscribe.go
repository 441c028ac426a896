package view

import (
	"sync"

	"github.com/sagaproject/saga/pkg/registry"
)

// SubscriptionBuffer is how many events a subscriber may fall behind before
// it is dropped. Writers never wait for a subscriber.
const SubscriptionBuffer = 256

// Subscription receives the public events (registered, updated,
// deregistered, expired) of some services, in the order the view applied
// them.
type Subscription struct {
	view     *View
	services map[string]bool // empty: every service
	events   chan registry.Event
	done     chan struct{}
	once     sync.Once
	dropped  bool // guarded by view.mu
}

// Subscribe starts a subscription to the events of the named services, or of
// every service when none is named. Close it when done.
func (v *View) Subscribe(services []string) *Subscription {
	s := &Subscription{
		view:     v,
		services: make(map[string]bool, len(services)),
		events:   make(chan registry.Event, SubscriptionBuffer),
		done:     make(chan struct{}),
	}
	for _, name := range services {
		s.services[name] = true
	}
	v.mu.Lock()
	v.subs[s] = struct{}{}
	v.mu.Unlock()
	return s
}

// Events delivers the subscription's events.
func (s *Subscription) Events() <-chan registry.Event { return s.events }

// Done is closed when the subscription ends: Close was called, or the
// subscriber fell too far behind and was dropped (see Dropped).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Dropped reports whether the view ended the subscription because its
// buffer was full; the subscriber has missed events.
func (s *Subscription) Dropped() bool {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	return s.dropped
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	s.endLocked()
}

func (s *Subscription) endLocked() {
	delete(s.view.subs, s)
	s.once.Do(func() { close(s.done) })
}

// publishLocked hands a public event to every subscriber that wants it. A
// subscriber whose buffer is full is dropped rather than waited for.
func (v *View) publishLocked(ev registry.Event) {
	if !ev.Type.Public() || len(v.subs) == 0 {
		return
	}
	ev.Instance = ev.Instance.Clone() // subscribers must not share the view's maps
	for s := range v.subs {
		if len(s.services) > 0 && !s.services[ev.Service] {
			continue
		}
		select {
		case s.events <- ev:
		default:
			s.dropped = true
			s.endLocked()
		}
	}
}
