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
	catalogCache *cacheEntry   // nil until the catalogue is first read
	catalogWake  chan struct{} // closed when the catalogue index changes
	cacheBytes   int64         // bytes of the services' cached answers
	bigEncodes   chan struct{} // a slot per big answer being encoded or compressed
	gzipWriters  sync.Pool     // *gzip.Writer, reset for each answer compressed
	spares       spareBuffers  // buffers of released big answers (reuse.go)
	watchers     map[string]*watch
	// gapped names the services that hold pending events.
	gapped      map[string]struct{}
	subs        map[*Subscription]struct{}
	lastRefresh time.Time

	// frozenAt is the moment of Freeze in nanoseconds since the epoch;
	// zero when the view is not frozen.
	frozenAt atomic.Int64

	hits        atomic.Uint64
	misses      atomic.Uint64
	expirations atomic.Uint64
}

// service is one service in the view.
type service struct {
	index uint64
	// instances are never modified once stored: a change stores a new
	// copy, so readers may hold them after letting go of the lock.
	instances *instanceSet
	// version grows with every change to the service, heartbeats included;
	// cache entries made at an older version are stale.
	version uint64
	// renewed grows with every heartbeat that moved a deadline.
	renewed uint64
	// checked grows with every check result that changed a status or an
	// output (SetCheckResults).
	checked uint64
	cache   map[string]*cacheEntry
	flights map[string]*flight // encodings under way, by query key
	// changedAt is when an applied event last changed the service.
	changedAt time.Time
	// pending holds the events above index+1 that arrived before the ones
	// between (see Apply); gapSince is when the oldest of them arrived.
	pending  map[uint64]registry.Event
	gapSince time.Time
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
		gapped:      map[string]struct{}{},
		bigEncodes:  make(chan struct{}, bigEncodes),
		spares:      spareBuffers{clock: clock},
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
		size += svc.instances.len()
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

// Load brings a snapshot of the whole store into the view: at start-up,
// after the change feed lost events (registry.EventResync), when a gap in a
// service's indexes is not filled in time (Lagging), and every refresh
// anyway. Per service:
//
//   - a snapshot at or above the view's index is the truth up to its index:
//     the view takes it, replays on top the events it holds above that
//     index, keeps the later of two deadlines of one registration, and
//     repairs whatever differs, even at an equal index;
//   - a snapshot below the view's index was read before the view's latest
//     events and is ignored, unless the view has not changed that service
//     for staleSnapshotWindow: then the store was reset, and its state is
//     taken;
//   - a service the snapshot lacks is kept while it changed recently and
//     dropped otherwise.
//
// Watchers of every service whose index or instances changed wake, and
// subscribers receive the differences as events. A service that did not
// change keeps its cached answers; its deadlines only move later, as with
// heartbeats, so a periodic reload costs the readers nothing.
func (v *View) Load(snap registry.Snapshot) {
	now := v.clock.Now()
	// Comparing a big service with its snapshot takes long; do it under
	// the read lock, so that a periodic reload of an unchanged registry
	// holds up no reader, and only apply the later deadlines it found
	// under the write lock.
	unchanged := v.unchangedServices(snap)

	v.mu.Lock()
	defer v.mu.Unlock()

	names := slices.Collect(maps.Keys(v.services))
	for name := range snap.Services {
		if _, ok := v.services[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	changed := false
	for _, name := range names {
		ss, inSnap := snap.Services[name]
		if r, ok := unchanged[name]; ok && r.stillFor(v.services[name], ss) {
			if moved, revived := r.svc.applyRenewals(r.renewals, v.liveNow()); moved {
				v.renewLocked(r.svc, revived)
			}
			continue
		}
		if v.loadServiceLocked(name, ss, inSnap, now) {
			changed = true
		}
	}
	var sum uint64
	for _, svc := range v.services {
		sum += svc.index
	}
	if sum != v.catalogIndex {
		v.catalogIndex = sum
		v.wakeCatalogLocked()
	}
	if changed {
		v.version++
	}
	v.lastRefresh = now
	v.spares.trim()
}

// unchangedService is a service that a snapshot holds as the view does, but
// for later deadlines (renewals), as found at its version.
type unchangedService struct {
	svc      *service
	version  uint64
	renewals []*registry.Instance
}

// unchangedServices finds, under the read lock, the services that snap
// holds exactly as the view does but for deadlines, and the later
// deadlines it brings.
func (v *View) unchangedServices(snap registry.Snapshot) map[string]unchangedService {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := map[string]unchangedService{}
	for name, ss := range snap.Services {
		cur := v.services[name]
		if cur == nil || ss.Index != cur.index || len(cur.pending) > 0 || !sameButDeadlines(cur.instances, ss.Instances) {
			continue
		}
		r := unchangedService{svc: cur, version: cur.version}
		for _, in := range ss.Instances {
			if held, _ := cur.instances.get(in.ID); in.ExpiresAt.After(held.ExpiresAt) {
				r.renewals = append(r.renewals, renewed(held, in))
			}
		}
		out[name] = r
	}
	return out
}

// stillFor reports whether the service is the one found unchanged, and has
// not changed since: then only its renewals remain to apply.
func (r unchangedService) stillFor(svc *service, ss registry.ServiceSnapshot) bool {
	return svc == r.svc && svc.version == r.version && svc.index == ss.Index && len(svc.pending) == 0
}

// applyRenewals takes the later deadlines found by unchangedServices,
// where they are still later, and reports whether any moved, and whether
// any of them was past its deadline at now (revived).
func (svc *service) applyRenewals(renewals []*registry.Instance, now time.Time) (moved, revived bool) {
	for _, in := range renewals {
		if cur, ok := svc.instances.get(in.ID); ok && in.ExpiresAt.After(cur.ExpiresAt) && cur.RegisteredAt.Equal(in.RegisteredAt) {
			svc.instances.set(renewed(cur, *in))
			moved, revived = true, revived || !cur.Live(now)
		}
	}
	return moved, revived
}

// loadServiceLocked brings one service of a snapshot into the view (see
// Load) and reports whether anything but deadlines changed.
func (v *View) loadServiceLocked(name string, ss registry.ServiceSnapshot, inSnap bool, now time.Time) bool {
	cur := v.services[name]
	recent := cur != nil && (now.Sub(cur.changedAt) < staleSnapshotWindow || len(cur.pending) > 0)
	switch {
	case !inSnap && cur == nil:
		return false
	case !inSnap:
		if recent && (cur.index > 0 || len(cur.pending) > 0) {
			return false // first written after the snapshot was read
		}
		v.replaceLocked(name, cur, nil, nil, now)
		return true
	case cur != nil && ss.Index < cur.index:
		if recent {
			return false // the snapshot was read before the latest events
		}
		v.replaceLocked(name, cur, fromSnapshot(ss), nil, now)
		return true
	case cur != nil && ss.Index == cur.index && len(cur.pending) == 0 && sameButDeadlines(cur.instances, ss.Instances):
		if moved, revived := cur.renewFrom(ss.Instances, v.liveNow()); moved {
			v.renewLocked(cur, revived)
		}
		return false
	}
	// The snapshot is the truth up to its index: take it, with the events
	// the view holds above that index on top.
	next := fromSnapshot(ss)
	var held, above []registry.Event
	if cur != nil {
		for _, index := range slices.Sorted(maps.Keys(cur.pending)) {
			if index <= ss.Index {
				held = append(held, cur.pending[index])
			} else {
				above = append(above, cur.pending[index])
			}
		}
		next.keepLaterDeadlines(cur.instances)
		next.keepCheckResults(cur.instances)
	}
	for _, ev := range above {
		next.setContent(ev)
	}
	v.replaceLocked(name, cur, next, held, now)
	if len(above) > 0 {
		next.pending = make(map[uint64]registry.Event, len(above))
		for _, ev := range above {
			next.pending[ev.Index] = ev
		}
		next.gapSince = cur.gapSince
		v.gapped[name] = struct{}{}
		if first, ok := next.pending[next.index+1]; ok {
			delete(next.pending, first.Index)
			v.advanceLocked(name, next, first)
		}
	}
	return true
}

// replaceLocked installs next (nil: no service) in place of cur: it
// publishes the events held below next's index in their order, then the
// differences that remain as events at next's index, and wakes the
// service's watchers.
func (v *View) replaceLocked(name string, cur, next *service, held []registry.Event, now time.Time) {
	for _, ev := range held {
		if ev.Type == registry.EventExpired {
			v.expirations.Add(1)
		}
		v.publishLocked(ev)
	}
	for _, ev := range diff(name, cur, next, now) {
		v.publishLocked(ev)
	}
	delete(v.gapped, name)
	if cur != nil {
		v.dropCacheLocked(cur)
	}
	if next == nil {
		delete(v.services, name)
	} else {
		next.changedAt = now
		v.services[name] = next
	}
	v.wakeServiceLocked(name)
}

// fromSnapshot builds a service from its snapshot.
func fromSnapshot(ss registry.ServiceSnapshot) *service {
	svc := &service{index: ss.Index, instances: newInstanceSet(len(ss.Instances))}
	for _, in := range ss.Instances {
		svc.instances.set(normalized(in))
	}
	return svc
}

// sameButDeadlines reports whether a snapshot holds exactly the instances
// in m, up to what heartbeats change.
func sameButDeadlines(m *instanceSet, list []registry.Instance) bool {
	if m.len() != len(list) {
		return false
	}
	for _, in := range list {
		cur, ok := m.get(in.ID)
		if !ok || !sameButDeadline(*cur, in) {
			return false
		}
	}
	return true
}

// renewFrom moves deadlines later to those of a snapshot of the same index
// (heartbeats the view has not seen) and reports whether any moved, and
// whether any of them was past its deadline at now (revived).
func (svc *service) renewFrom(list []registry.Instance, now time.Time) (moved, revived bool) {
	for _, in := range list {
		cur, ok := svc.instances.get(in.ID)
		if ok && in.ExpiresAt.After(cur.ExpiresAt) {
			svc.instances.set(renewed(cur, in))
			moved, revived = true, revived || !cur.Live(now)
		}
	}
	return moved, revived
}

// keepLaterDeadlines takes, for every instance that old holds in the same
// registration, old's deadline when it is later: a heartbeat the view
// applied after the snapshot was read.
func (svc *service) keepLaterDeadlines(old *instanceSet) {
	for id, in := range svc.instances.all() {
		prev, ok := old.get(id)
		if ok && prev.RegisteredAt.Equal(in.RegisteredAt) && prev.ExpiresAt.After(in.ExpiresAt) {
			svc.instances.set(renewed(in, *prev))
		}
	}
}

// renewed returns a copy of cur with the deadline and last heartbeat of
// later: the instances in the view are never modified in place.
func renewed(cur *registry.Instance, later registry.Instance) *registry.Instance {
	out := *cur
	out.ExpiresAt = later.ExpiresAt.UTC()
	out.LastHeartbeat = later.LastHeartbeat.UTC()
	return &out
}

// Apply brings one store event into the view, whichever way it came (the
// write path that made it, the change feed, the reaper) and in whatever
// order.
//
// An event at or below the service's index, or one already held, was
// applied before and changes nothing. An event further ahead than the
// next index has its instance applied at once, unless the view already
// holds a later change of that instance, so the writer that made it reads
// it; but the index, the watchers and the subscribers move only once every
// earlier event is in, in index order. A reader that saw index N has
// therefore seen every change up to N, and a watcher waiting past N never
// misses one. A heartbeat only ever moves a deadline later, and only of
// the registration it renews. EventResync is
// not handled here: its reader reloads a Snapshot with Load.
func (v *View) Apply(ev registry.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Type {
	case registry.EventRegistered, registry.EventUpdated, registry.EventDeregistered, registry.EventExpired:
		v.applyIndexedLocked(ev)
	case registry.EventHeartbeat:
		svc := v.services[ev.Service]
		if svc == nil {
			return
		}
		cur, ok := svc.instances.get(ev.Instance.ID)
		// A heartbeat renews the registration it was made for: a late
		// one of a registration since replaced must not lend the new one
		// its deadline.
		if !ok || !ev.Instance.RegisteredAt.Equal(cur.RegisteredAt) || !ev.Instance.ExpiresAt.After(cur.ExpiresAt) {
			return
		}
		svc.instances.set(renewed(cur, ev.Instance))
		v.renewLocked(svc, !cur.Live(v.liveNow()))
	}
}

func (v *View) applyIndexedLocked(ev registry.Event) {
	svc := v.serviceLocked(ev.Service)
	if ev.Index <= svc.index {
		return
	}
	if _, held := svc.pending[ev.Index]; held {
		return
	}
	if !svc.holdsLaterChange(ev.Instance.ID, ev.Index) {
		svc.setContent(ev)
		svc.changedAt = v.clock.Now()
		v.touchLocked(svc)
		v.version++
	}
	if ev.Index > svc.index+1 {
		if svc.pending == nil {
			svc.pending = map[uint64]registry.Event{}
		}
		if len(svc.pending) == 0 {
			svc.gapSince = v.clock.Now()
			v.gapped[ev.Service] = struct{}{}
		}
		svc.pending[ev.Index] = ev
		return
	}
	v.advanceLocked(ev.Service, svc, ev)
}

// holdsLaterChange reports whether an event held above the index changes
// the instance id at an index later than index.
func (svc *service) holdsLaterChange(id string, index uint64) bool {
	for i, ev := range svc.pending {
		if i > index && ev.Instance.ID == id {
			return true
		}
	}
	return false
}

// setContent applies what an event did to its instance.
func (svc *service) setContent(ev registry.Event) {
	switch ev.Type {
	case registry.EventRegistered, registry.EventUpdated:
		prev, _ := svc.instances.get(ev.Instance.ID)
		svc.instances.set(withResultsOf(normalized(ev.Instance), prev))
	case registry.EventDeregistered, registry.EventExpired:
		svc.instances.remove(ev.Instance.ID)
	}
}

// Lagging reports whether some service has waited longer than after for
// an event that would fill a gap in its indexes. The change feed lost it
// (a write whose answer never came back, a dropped notice), and only a
// snapshot (Load) repairs the view.
func (v *View) Lagging(after time.Duration) bool {
	now := v.clock.Now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	for name := range v.gapped {
		if svc := v.services[name]; svc != nil && now.Sub(svc.gapSince) >= after {
			return true
		}
	}
	return false
}

// serviceLocked returns the named service, creating it at index 0.
func (v *View) serviceLocked(name string) *service {
	svc := v.services[name]
	if svc == nil {
		svc = &service{instances: newInstanceSet(0)}
		v.services[name] = svc
	}
	return svc
}

// advanceLocked moves a service to the index of ev, the event right after
// its index, then on through the events held above it for as long as they
// follow one another. It publishes each in order and wakes the service's
// watchers and the catalogue's.
func (v *View) advanceLocked(name string, svc *service, ev registry.Event) {
	prev := svc.index
	for {
		svc.index = ev.Index
		if ev.Type == registry.EventExpired {
			v.expirations.Add(1)
		}
		v.publishLocked(ev)
		next, ok := svc.pending[svc.index+1]
		if !ok {
			break
		}
		delete(svc.pending, next.Index)
		ev = next
	}
	if len(svc.pending) == 0 {
		svc.gapSince = time.Time{}
		delete(v.gapped, name)
	}
	v.catalogIndex += svc.index - prev
	svc.changedAt = v.clock.Now()
	v.touchLocked(svc)
	v.version++
	v.wakeServiceLocked(name)
	v.wakeCatalogLocked()
}

// touchLocked records a change to a service's instances that makes its
// cached answers stale at once.
func (v *View) touchLocked(svc *service) {
	svc.version++
	v.dropCacheLocked(svc)
}

// renewLocked records that heartbeats moved deadlines later in a service:
// its cached answers that show deadlines are stale, big ones after
// renewSlack (query.go); the others keep serving (see Fields). It wakes
// nobody, and the catalogue's cache survives: a later deadline changes
// none of its counts, and the earliest deadline it was cached with only
// makes it expire early. An instance renewed after its deadline had passed
// (revived) is back in answers that left it out: that is a change like
// any other.
func (v *View) renewLocked(svc *service, revived bool) {
	if revived {
		v.touchLocked(svc)
		v.version++
		return
	}
	svc.renewed++
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
	now := v.liveNow()
	v.mu.RLock()
	defer v.mu.RUnlock()
	svc := v.services[serviceName]
	if svc == nil {
		return registry.Instance{}, false
	}
	in, ok := svc.instances.get(id)
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
	now := v.liveNow()
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
	for _, in := range svc.instances.all() {
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
func normalized(in registry.Instance) *registry.Instance {
	out := in.Clone()
	out.RegisteredAt = out.RegisteredAt.UTC()
	out.LastHeartbeat = out.LastHeartbeat.UTC()
	out.ExpiresAt = out.ExpiresAt.UTC()
	return &out
}

// diff turns the change of one service between two loads into the public
// events a subscriber would have seen. A vanished instance whose deadline
// had passed is reported as expired, any other as deregistered.
func diff(name string, before, after *service, now time.Time) []registry.Event {
	index := indexOf(after)
	old, cur := newInstanceSet(0), newInstanceSet(0)
	if before != nil {
		old = before.instances
	}
	if after != nil {
		cur = after.instances
	}
	var events []registry.Event
	for _, id := range sortedIDs(old) {
		in, _ := old.get(id)
		if _, ok := cur.get(id); ok {
			continue
		}
		typ := registry.EventDeregistered
		if !in.Live(now) {
			typ = registry.EventExpired
		}
		events = append(events, registry.Event{Type: typ, Service: name, Instance: *in, Index: index})
	}
	for _, id := range sortedIDs(cur) {
		in, _ := cur.get(id)
		prev, ok := old.get(id)
		switch {
		case !ok:
			events = append(events, registry.Event{Type: registry.EventRegistered, Service: name, Instance: *in, Index: index})
		case !sameButDeadline(*prev, *in):
			events = append(events, registry.Event{Type: registry.EventUpdated, Service: name, Instance: *in, Index: index})
		}
	}
	return events
}

// sameButDeadline reports whether two versions of an instance differ only in
// what a heartbeat changes.
func sameButDeadline(a, b registry.Instance) bool {
	return a.Address == b.Address && a.Port == b.Port && a.TTLSeconds == b.TTLSeconds &&
		a.Status == b.Status && a.RegisteredAt.Equal(b.RegisteredAt) &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Metadata, b.Metadata) &&
		registry.SameCheckDefinitions(a.Checks, b.Checks)
}

func sortedIDs(m *instanceSet) []string {
	ids := slices.Collect(maps.Keys(m.pos))
	slices.Sort(ids)
	return ids
}
