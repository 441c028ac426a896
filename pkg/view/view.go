// Package view is Saga's in-memory picture of the registry. It serves every
// read: instances by service with their filters, the per-service and
// catalogue indexes, blocking waits that wake only the watchers of what
// changed, the event fan-out behind Server-Sent Events, and encoded JSON
// cached per service and query.
//
// The view is fed from two sides: the HTTP write path applies the event each
// store call returns (read-your-writes on one node), and the daemon pumps the
// store's change feed into it. Applying is idempotent, so the same event
// arriving twice changes nothing.
package view

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// View holds the registry in memory. It is safe for concurrent use.
type View struct {
	clock registry.Clock

	mu       sync.RWMutex
	services map[string]*service
	// catalogIndex is the sum of every service's index.
	catalogIndex uint64
	// version grows with every change that can alter the catalogue; it keys
	// the catalogue cache.
	version      uint64
	catalogCache cacheEntry
	catalogWake  chan struct{} // closed when the catalogue index changes
	watchers     map[string]*watch
	subs         map[*Subscription]struct{}
	lastRefresh  time.Time

	hits        atomic.Uint64
	misses      atomic.Uint64
	expirations atomic.Uint64
}

// service is one service in the view.
type service struct {
	index     uint64
	instances map[string]registry.Instance
	// version grows with every change to the service, heartbeats included;
	// cache entries made at an older version are stale.
	version uint64
	cache   map[string]cacheEntry
	// advancedAt is when an applied event last moved the index.
	advancedAt time.Time
}

// staleSnapshotWindow is how long after an applied event a snapshot with a
// lower index for that service is taken for one read before the event (the
// daemon's periodic reload racing a write) rather than for a store that was
// reset. A reset is taken at the next reload after the window.
const staleSnapshotWindow = 5 * time.Second

// watch is the channel that the blocking waits on one service share; it is
// closed when that service's index changes.
type watch struct {
	ch      chan struct{}
	waiters int
}

// New returns an empty view that reads the time from clock.
func New(clock registry.Clock) *View {
	return &View{
		clock:       clock,
		services:    map[string]*service{},
		catalogWake: make(chan struct{}),
		watchers:    map[string]*watch{},
		subs:        map[*Subscription]struct{}{},
	}
}

// Stats is what the health report shows of the view.
type Stats struct {
	Size        int       // instances held, including any not yet reaped
	Services    int       // services with an index
	Hits        uint64    // reads answered from cached JSON
	Misses      uint64    // reads that had to encode
	Expirations uint64    // expired events applied
	LastRefresh time.Time // when a full snapshot was last loaded; zero before the first
}

// Stats returns the view's counters.
func (v *View) Stats() Stats {
	v.mu.RLock()
	defer v.mu.RUnlock()
	size := 0
	for _, svc := range v.services {
		size += len(svc.instances)
	}
	return Stats{
		Size:        size,
		Services:    len(v.services),
		Hits:        v.hits.Load(),
		Misses:      v.misses.Load(),
		Expirations: v.expirations.Load(),
		LastRefresh: v.lastRefresh,
	}
}

// Load replaces the whole view with snap. Watchers of every service whose
// index changed wake, and subscribers receive the differences as events, so
// a reload after lost events (registry.EventResync) does not leave them
// behind. A service whose index did not change keeps its cached answers;
// its deadlines only move later, as with heartbeats, so a periodic reload
// costs the readers nothing. A service that an applied event moved ahead of
// the snapshot within staleSnapshotWindow keeps its newer state.
func (v *View) Load(snap registry.Snapshot) {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()

	next, sum := v.mergeLocked(snap, now)
	changed := false
	for _, name := range unionKeys(v.services, next) {
		before, after := v.services[name], next[name]
		if before == after {
			continue
		}
		changed = true
		if indexOf(before) == indexOf(after) {
			continue
		}
		v.wakeServiceLocked(name)
		for _, ev := range diff(name, before, after, now) {
			v.publishLocked(ev)
		}
	}
	v.services = next
	if sum != v.catalogIndex {
		v.catalogIndex = sum
		v.wakeCatalogLocked()
	}
	if changed {
		v.version++
	}
	v.lastRefresh = now
}

// mergeLocked builds the services that Load installs, and the sum of their
// indexes. It reuses the view's own service where the snapshot has nothing
// newer: at the same index (moving deadlines later), or at a higher index
// reached by an event applied within staleSnapshotWindow.
func (v *View) mergeLocked(snap registry.Snapshot, now time.Time) (map[string]*service, uint64) {
	next := make(map[string]*service, len(snap.Services))
	var sum uint64
	recent := func(svc *service) bool { return now.Sub(svc.advancedAt) < staleSnapshotWindow }
	for name, ss := range snap.Services {
		cur := v.services[name]
		switch {
		case cur != nil && cur.index > ss.Index && recent(cur):
			next[name] = cur // the snapshot was read before the latest write
		case cur != nil && cur.index == ss.Index && sameIDs(cur.instances, ss.Instances):
			if cur.renewFrom(ss.Instances) {
				v.touchLocked(cur)
			}
			next[name] = cur
		default:
			svc := &service{index: ss.Index, instances: make(map[string]registry.Instance, len(ss.Instances))}
			for _, in := range ss.Instances {
				svc.instances[in.ID] = normalized(in)
			}
			next[name] = svc
		}
		sum += next[name].index
	}
	for name, cur := range v.services {
		if _, ok := next[name]; !ok && cur.index > 0 && recent(cur) {
			next[name] = cur // first written after the snapshot was read
			sum += cur.index
		}
	}
	return next, sum
}

// sameIDs reports whether a snapshot holds exactly the instances in m.
func sameIDs(m map[string]registry.Instance, list []registry.Instance) bool {
	if len(m) != len(list) {
		return false
	}
	for _, in := range list {
		if _, ok := m[in.ID]; !ok {
			return false
		}
	}
	return true
}

// renewFrom moves deadlines later to those of a snapshot of the same index
// (heartbeats the view has not seen) and reports whether any moved.
func (svc *service) renewFrom(list []registry.Instance) bool {
	moved := false
	for _, in := range list {
		cur := svc.instances[in.ID]
		if in.ExpiresAt.After(cur.ExpiresAt) {
			cur.ExpiresAt = in.ExpiresAt.UTC()
			cur.LastHeartbeat = in.LastHeartbeat.UTC()
			svc.instances[in.ID] = cur
			moved = true
		}
	}
	return moved
}

// Apply brings one store event into the view. Events whose index is not
// above the service's current index are ignored, so applying an event twice
// (once from the write path, once from the change feed) is harmless. A
// heartbeat only ever moves a deadline later. EventResync is not handled
// here: its reader reloads a Snapshot with Load.
func (v *View) Apply(ev registry.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Type {
	case registry.EventRegistered, registry.EventUpdated:
		svc := v.serviceLocked(ev.Service)
		if ev.Index <= svc.index {
			return
		}
		svc.instances[ev.Instance.ID] = normalized(ev.Instance)
		v.advanceLocked(ev.Service, svc, ev.Index)
		v.publishLocked(ev)
	case registry.EventDeregistered, registry.EventExpired:
		svc := v.serviceLocked(ev.Service)
		if ev.Index <= svc.index {
			return
		}
		delete(svc.instances, ev.Instance.ID)
		v.advanceLocked(ev.Service, svc, ev.Index)
		if ev.Type == registry.EventExpired {
			v.expirations.Add(1)
		}
		v.publishLocked(ev)
	case registry.EventHeartbeat:
		svc := v.services[ev.Service]
		if svc == nil {
			return
		}
		cur, ok := svc.instances[ev.Instance.ID]
		if !ok || !ev.Instance.ExpiresAt.After(cur.ExpiresAt) {
			return
		}
		cur.ExpiresAt = ev.Instance.ExpiresAt.UTC()
		cur.LastHeartbeat = ev.Instance.LastHeartbeat.UTC()
		svc.instances[cur.ID] = cur
		v.touchLocked(svc)
	}
}

// serviceLocked returns the named service, creating it at index 0.
func (v *View) serviceLocked(name string) *service {
	svc := v.services[name]
	if svc == nil {
		svc = &service{instances: map[string]registry.Instance{}}
		v.services[name] = svc
	}
	return svc
}

// advanceLocked moves a service to a new index and wakes its watchers and
// the catalogue's.
func (v *View) advanceLocked(name string, svc *service, index uint64) {
	v.catalogIndex = v.catalogIndex - svc.index + index
	svc.index = index
	svc.advancedAt = v.clock.Now()
	v.touchLocked(svc)
	v.version++
	v.wakeServiceLocked(name)
	v.wakeCatalogLocked()
}

// touchLocked records a change to a service that invalidates its cached
// answers but wakes nobody (a heartbeat). The catalogue's cache survives:
// a later deadline changes none of its counts, and the earliest deadline it
// was cached with only makes it expire early.
func (v *View) touchLocked(svc *service) {
	svc.version++
	svc.cache = nil
}

func (v *View) wakeServiceLocked(name string) {
	if w := v.watchers[name]; w != nil {
		close(w.ch)
		delete(v.watchers, name)
	}
}

func (v *View) wakeCatalogLocked() {
	close(v.catalogWake)
	v.catalogWake = make(chan struct{})
}

// ServiceIndex returns a service's index; 0 for a service never seen.
func (v *View) ServiceIndex(name string) uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return indexOf(v.services[name])
}

// CatalogIndex returns the catalogue index: the sum of all service indexes.
func (v *View) CatalogIndex() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.catalogIndex
}

// WaitService blocks while the service's index equals index, until it
// changes or ctx ends, and returns the index then. An index that differs
// from the current one (older, or newer after a store reset) returns at
// once. Only changes to this service wake the wait.
func (v *View) WaitService(ctx context.Context, name string, index uint64) uint64 {
	v.mu.Lock()
	if cur := indexOf(v.services[name]); cur != index {
		v.mu.Unlock()
		return cur
	}
	w := v.watchers[name]
	if w == nil {
		w = &watch{ch: make(chan struct{})}
		v.watchers[name] = w
	}
	w.waiters++
	v.mu.Unlock()

	select {
	case <-w.ch:
	case <-ctx.Done():
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	w.waiters--
	// Forget a watch nobody waits on any more, so names that were waited on
	// once do not pile up.
	if w.waiters == 0 && v.watchers[name] == w {
		delete(v.watchers, name)
	}
	return indexOf(v.services[name])
}

// WaitCatalog blocks while the catalogue index equals index, until it
// changes or ctx ends, and returns the index then.
func (v *View) WaitCatalog(ctx context.Context, index uint64) uint64 {
	v.mu.RLock()
	cur, wake := v.catalogIndex, v.catalogWake
	v.mu.RUnlock()
	if cur != index {
		return cur
	}
	select {
	case <-wake:
	case <-ctx.Done():
	}
	return v.CatalogIndex()
}

// Instance returns one live instance.
func (v *View) Instance(serviceName, id string) (registry.Instance, bool) {
	now := v.clock.Now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	svc := v.services[serviceName]
	if svc == nil {
		return registry.Instance{}, false
	}
	in, ok := svc.instances[id]
	if !ok || !in.Live(now) {
		return registry.Instance{}, false
	}
	return in.Clone(), true
}

// Counts tallies a service's live instances by status.
type Counts struct {
	Instances int `json:"instances"`
	Passing   int `json:"passing"`
	Warning   int `json:"warning"`
	Critical  int `json:"critical"`
}

// Health counts a service's live instances and returns its index.
func (v *View) Health(serviceName string) (Counts, uint64) {
	now := v.clock.Now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	svc := v.services[serviceName]
	if svc == nil {
		return Counts{}, 0
	}
	return countLive(svc, now), svc.index
}

func countLive(svc *service, now time.Time) Counts {
	var c Counts
	for _, in := range svc.instances {
		if !in.Live(now) {
			continue
		}
		c.Instances++
		switch in.Status {
		case registry.StatusPassing:
			c.Passing++
		case registry.StatusWarning:
			c.Warning++
		case registry.StatusCritical:
			c.Critical++
		}
	}
	return c
}

func indexOf(svc *service) uint64 {
	if svc == nil {
		return 0
	}
	return svc.index
}

// normalized copies an instance for keeping, with its times in UTC so the
// JSON always reads as UTC.
func normalized(in registry.Instance) registry.Instance {
	out := in.Clone()
	out.RegisteredAt = out.RegisteredAt.UTC()
	out.LastHeartbeat = out.LastHeartbeat.UTC()
	out.ExpiresAt = out.ExpiresAt.UTC()
	return out
}

func unionKeys(a, b map[string]*service) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// diff turns the change of one service between two loads into the public
// events a subscriber would have seen. A vanished instance whose deadline
// had passed is reported as expired, any other as deregistered.
func diff(name string, before, after *service, now time.Time) []registry.Event {
	index := indexOf(after)
	var old, cur map[string]registry.Instance
	if before != nil {
		old = before.instances
	}
	if after != nil {
		cur = after.instances
	}
	var events []registry.Event
	for _, id := range sortedIDs(old) {
		in := old[id]
		if _, ok := cur[id]; ok {
			continue
		}
		typ := registry.EventDeregistered
		if !in.Live(now) {
			typ = registry.EventExpired
		}
		events = append(events, registry.Event{Type: typ, Service: name, Instance: in, Index: index})
	}
	for _, id := range sortedIDs(cur) {
		in := cur[id]
		prev, ok := old[id]
		switch {
		case !ok:
			events = append(events, registry.Event{Type: registry.EventRegistered, Service: name, Instance: in, Index: index})
		case !sameButDeadline(prev, in):
			events = append(events, registry.Event{Type: registry.EventUpdated, Service: name, Instance: in, Index: index})
		}
	}
	return events
}

// sameButDeadline reports whether two versions of an instance differ only in
// what a heartbeat changes.
func sameButDeadline(a, b registry.Instance) bool {
	return a.Address == b.Address && a.Port == b.Port && a.TTLSeconds == b.TTLSeconds &&
		a.Status == b.Status && a.RegisteredAt.Equal(b.RegisteredAt) &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Metadata, b.Metadata)
}

func sortedIDs(m map[string]registry.Instance) []string {
	ids := slices.Collect(maps.Keys(m))
	slices.Sort(ids)
	return ids
}
