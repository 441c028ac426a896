package redisstore

import (
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// sweepEvery is how often ExpireDue runs the expire script on every
// service in the catalogue rather than only on those known to be due: it
// catches services whose deadlines this process never heard of.
const sweepEvery = 5 * time.Second

// dueHints keeps, per service, a lower bound of its earliest deadline,
// learned from every notice this process sees (its own and the other
// processes'), so that the reaper's call every 250 ms runs the expire
// script only for services that may have something due, not for the
// whole catalogue.
type dueHints struct {
	mu        sync.Mutex
	next      map[string]int64  // service -> earliest deadline it may have, ms
	gen       map[string]uint64 // bumped whenever a notice lowers next
	lastSweep time.Time
	sweepAll  bool // notices may have been lost: sweep at the next call
}

// saw lowers a service's hint to the deadline an event carries.
func (h *dueHints) saw(ev registry.Event) {
	switch ev.Type {
	case registry.EventRegistered, registry.EventUpdated, registry.EventHeartbeat:
	default:
		return
	}
	deadline := millis(ev.Instance.ExpiresAt)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next, h.gen = map[string]int64{}, map[string]uint64{}
	}
	if cur, ok := h.next[ev.Service]; !ok || deadline < cur {
		h.next[ev.Service] = deadline
		h.gen[ev.Service]++
	}
}

// lost records that notices may have been missed.
func (h *dueHints) lost() {
	h.mu.Lock()
	h.sweepAll = true
	h.mu.Unlock()
}

// plan says which services to run the expire script on at now: all of
// them (sweep) or those listed. gens are the hints' generations, for done.
func (h *dueHints) plan(now time.Time) (sweep bool, services []string, gens map[string]uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	gens = make(map[string]uint64, len(h.gen))
	for svc, g := range h.gen {
		gens[svc] = g
	}
	if h.sweepAll || h.lastSweep.IsZero() || now.Sub(h.lastSweep) >= sweepEvery || now.Before(h.lastSweep) {
		return true, nil, gens
	}
	limit := millis(now)
	for svc, next := range h.next {
		if next <= limit {
			services = append(services, svc)
		}
	}
	return false, services, gens
}

// done records what the expire script found: each service's earliest
// remaining deadline (none when it has no instances). A hint that a notice
// lowered meanwhile keeps the lower of the two.
func (h *dueHints) done(now time.Time, sweep bool, gens map[string]uint64, next map[string]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next, h.gen = map[string]int64{}, map[string]uint64{}
	}
	if sweep {
		h.lastSweep, h.sweepAll = now, false
	}
	for svc, deadline := range next {
		if cur, ok := h.next[svc]; ok && h.gen[svc] != gens[svc] {
			deadline = min(deadline, cur)
		}
		h.next[svc] = deadline
	}
}
