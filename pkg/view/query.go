package view

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// StatusFilter selects instances by the status they report.
type StatusFilter string

// The status filters a lookup accepts (SPEC §2).
const (
	// StatusHealthy, the default, keeps passing and warning instances.
	StatusHealthy StatusFilter = ""
	// StatusPassing keeps passing instances only.
	StatusPassing StatusFilter = "passing"
	// StatusAny keeps every live instance, critical ones included.
	StatusAny StatusFilter = "any"
)

// ParseStatusFilter reads the status query parameter; empty is the default.
func ParseStatusFilter(s string) (StatusFilter, error) {
	switch f := StatusFilter(s); f {
	case StatusHealthy, StatusPassing, StatusAny:
		return f, nil
	}
	return "", fmt.Errorf("%q must be passing or any (default: passing and warning)", s)
}

func (f StatusFilter) keeps(s registry.Status) bool {
	switch f {
	case StatusPassing:
		return s == registry.StatusPassing
	case StatusAny:
		return true
	default:
		return s == registry.StatusPassing || s == registry.StatusWarning
	}
}

// MetaMatch requires a metadata key to hold a value.
type MetaMatch struct {
	Key, Value string
}

// Query filters a lookup. Every tag and every metadata match must hold.
type Query struct {
	Tags   []string
	Meta   []MetaMatch
	Status StatusFilter
}

// key identifies the query in the cache: the same filters in another order
// share one entry.
func (q Query) key() string {
	tags := slices.Clone(q.Tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	meta := make([]string, 0, len(q.Meta))
	for _, m := range q.Meta {
		meta = append(meta, m.Key+"\x00"+m.Value)
	}
	slices.Sort(meta)
	meta = slices.Compact(meta)
	return string(q.Status) + "\x01" + strings.Join(tags, "\x00") + "\x01" + strings.Join(meta, "\x01")
}

func (q Query) matches(in *registry.Instance) bool {
	if !q.Status.keeps(in.Status) {
		return false
	}
	for _, tag := range q.Tags {
		if !slices.Contains(in.Tags, tag) {
			return false
		}
	}
	for _, m := range q.Meta {
		if v, ok := in.Metadata[m.Key]; !ok || v != m.Value {
			return false
		}
	}
	return true
}

// maxCachedQueries bounds the cache of one service, so a client that sends
// endless distinct filters cannot grow it without limit.
const maxCachedQueries = 64

// cacheBudget bounds the bytes of encoded lookups that the view keeps across
// every service: one answer of a service with 200,000 instances is tens of
// megabytes.
const cacheBudget = 256 << 20

// Big answers. Encoding one takes a core for a good part of a second, so:
//   - an answer of at least bigAnswer instances is reused for up to
//     renewSlack after heartbeats moved deadlines in it (its expires_at
//     values lag by that much, never its instances: any other change
//     makes it stale at once);
//   - at most bigEncodes of them are encoded at a time, which bounds the
//     memory that concurrent readers of big services take.
const (
	bigAnswer  = 1000
	renewSlack = time.Second
	bigEncodes = 2
)

// cacheEntry is one encoded answer. It is good until the service changes
// (version) or the earliest deadline among the instances in it passes;
// heartbeats (renewed) make it stale too, after renewSlack for a big one.
type cacheEntry struct {
	body       []byte
	index      uint64
	version    uint64
	renewed    uint64
	big        bool
	madeAt     time.Time // by the clock, for renewSlack
	validUntil time.Time // zero when the answer holds no instance
}

func (e cacheEntry) fresh(version uint64, now time.Time) bool {
	return e.body != nil && e.version == version && (e.validUntil.IsZero() || now.Before(e.validUntil))
}

// freshFor reports whether the entry still answers for svc.
func (e cacheEntry) freshFor(svc *service, now, wall time.Time) bool {
	return e.fresh(svc.version, now) &&
		(e.renewed == svc.renewed || (e.big && wall.Sub(e.madeAt) < renewSlack))
}

// flight is one encoding of a lookup that concurrent readers of the same
// query and the same state of the service share.
type flight struct {
	done    chan struct{}
	version uint64
	renewed uint64
	body    []byte // set before done is closed
	index   uint64
}

// Lookup returns the live instances of a service that match q, sorted by id,
// and the service's index.
func (v *View) Lookup(serviceName string, q Query) ([]registry.Instance, uint64) {
	now := v.liveNow()
	v.mu.RLock()
	svc := v.services[serviceName]
	if svc == nil {
		v.mu.RUnlock()
		return []registry.Instance{}, 0
	}
	list := svc.instances.pointers()
	index := svc.index
	v.mu.RUnlock()
	found, _ := collect(list, q, now)
	sortByID(found)
	out := make([]registry.Instance, len(found))
	for i, in := range found {
		out[i] = in.Clone()
	}
	return out, index
}

// collectLocked returns the live instances of svc that match q (see
// collect). Callers hold the view's lock.
func collectLocked(svc *service, q Query, now time.Time) ([]*registry.Instance, time.Time) {
	return collect(svc.instances.pointers(), q, now)
}

// collect keeps the instances of list that are live at now and match q,
// in list's own array, and returns them with the earliest deadline among
// them. The instances are the view's own, which it never modifies, so no
// lock is needed: callers copy the list under the lock (a memmove, short
// even for 200,000 instances) and filter after letting go of it, cloning
// what they hand out.
func collect(list []*registry.Instance, q Query, now time.Time) ([]*registry.Instance, time.Time) {
	found := list[:0]
	var earliest time.Time
	for _, in := range list {
		if !in.Live(now) || !q.matches(in) {
			continue
		}
		found = append(found, in)
		if earliest.IsZero() || in.ExpiresAt.Before(earliest) {
			earliest = in.ExpiresAt
		}
	}
	clear(list[len(found):]) // let go of what was filtered out
	return found, earliest
}

func sortByID(list []*registry.Instance) {
	slices.SortFunc(list, func(a, b *registry.Instance) int { return strings.Compare(a.ID, b.ID) })
}

// lookupBody is the JSON answer of GET /api/v1/services/{service}.
type lookupBody struct {
	Service   string              `json:"service"`
	Index     uint64              `json:"index"`
	Instances []registry.Instance `json:"instances"`
}

// LookupJSON returns the encoded answer of a lookup,
// {"service","index","instances"}, and the service's index. The encoding is
// cached per service and query until the service changes or an instance in
// the answer passes its deadline, and concurrent readers of one query
// share one encoding. Sorting and encoding happen outside the view's lock,
// so a big service never holds up the readers and writers of others.
// Callers must not modify the bytes.
func (v *View) LookupJSON(serviceName string, q Query) ([]byte, uint64) {
	now, wall := v.liveNow(), v.clock.Now()
	key := q.key()

	v.mu.RLock()
	svc := v.services[serviceName]
	if svc == nil {
		v.mu.RUnlock()
		v.misses.Add(1)
		return mustEncode(lookupBody{Service: serviceName, Instances: []registry.Instance{}}), 0
	}
	if e, ok := svc.cache[key]; ok && e.freshFor(svc, now, wall) {
		v.mu.RUnlock()
		v.hits.Add(1)
		return e.body, e.index
	}
	v.mu.RUnlock()

	v.mu.Lock()
	svc = v.services[serviceName]
	if svc == nil {
		v.mu.Unlock()
		v.misses.Add(1)
		return mustEncode(lookupBody{Service: serviceName, Instances: []registry.Instance{}}), 0
	}
	if e, ok := svc.cache[key]; ok && e.freshFor(svc, now, wall) {
		v.mu.Unlock()
		v.hits.Add(1)
		return e.body, e.index
	}
	// Join an encoding under way of the same state; for a big service,
	// one that only heartbeats have overtaken (as its cached answer would).
	if f := svc.flights[key]; f != nil && f.version == svc.version &&
		(f.renewed == svc.renewed || svc.instances.len() >= bigAnswer) {
		v.mu.Unlock()
		<-f.done
		v.hits.Add(1)
		return f.body, f.index
	}
	f := &flight{done: make(chan struct{}), version: svc.version, renewed: svc.renewed}
	if svc.flights == nil {
		svc.flights = map[string]*flight{}
	}
	svc.flights[key] = f
	v.mu.Unlock()

	// Copy the pointers under the read lock (short even for a big
	// service), then filter, sort and encode with no lock held.
	v.mu.RLock()
	list := svc.instances.pointers()
	f.index = svc.index
	v.mu.RUnlock()
	found, earliest := collect(list, q, now)

	v.misses.Add(1)
	big := len(found) >= bigAnswer
	if big {
		v.bigEncodes <- struct{}{}
	}
	sortByID(found)
	f.body = appendLookup(make([]byte, 0, lookupSizeHint(serviceName, found)), serviceName, f.index, found)
	if big {
		<-v.bigEncodes
	}

	v.mu.Lock()
	if svc.flights[key] == f {
		delete(svc.flights, key)
	}
	// Keep the entry only if the service did not change while encoding.
	if v.services[serviceName] == svc && svc.version == f.version {
		v.cacheLocked(svc, key, cacheEntry{
			body: f.body, index: f.index, version: f.version, renewed: f.renewed,
			big: big, madeAt: wall, validUntil: earliest,
		})
	}
	close(f.done)
	v.mu.Unlock()
	return f.body, f.index
}

// cacheLocked keeps an answer within maxCachedQueries per service and
// cacheBudget overall, dropping other services' answers to make room.
func (v *View) cacheLocked(svc *service, key string, e cacheEntry) {
	size := int64(len(e.body))
	if size > cacheBudget/2 {
		return // would leave room for little else
	}
	if old, ok := svc.cache[key]; ok {
		v.cacheBytes -= int64(len(old.body))
		delete(svc.cache, key)
	}
	if len(svc.cache) >= maxCachedQueries {
		v.dropCacheLocked(svc)
	}
	for _, other := range v.services { // map order: a random victim each time
		if v.cacheBytes+size <= cacheBudget {
			break
		}
		if other != svc {
			v.dropCacheLocked(other)
		}
	}
	if v.cacheBytes+size > cacheBudget {
		v.dropCacheLocked(svc)
	}
	if svc.cache == nil {
		svc.cache = map[string]cacheEntry{}
	}
	svc.cache[key] = e
	v.cacheBytes += size
}

// dropCacheLocked forgets a service's cached answers.
func (v *View) dropCacheLocked(svc *service) {
	for _, e := range svc.cache {
		v.cacheBytes -= int64(len(e.body))
	}
	svc.cache = nil
}

// CatalogEntry is one service in the catalogue: how many live instances it
// has, and how many of them pass.
type CatalogEntry struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
}

// Catalog lists the services that have at least one live instance, sorted by
// name, and the catalogue index. A service whose instances have all gone is
// left out, though its index still counts in the catalogue index.
func (v *View) Catalog() ([]CatalogEntry, uint64) {
	now := v.liveNow()
	v.mu.RLock()
	defer v.mu.RUnlock()
	entries, _ := v.catalogLocked(now)
	return entries, v.catalogIndex
}

func (v *View) catalogLocked(now time.Time) ([]CatalogEntry, time.Time) {
	entries := []CatalogEntry{}
	var earliest time.Time
	for name, svc := range v.services {
		c := countLive(svc, now)
		if c.Instances == 0 {
			continue
		}
		entries = append(entries, CatalogEntry{Name: name, Instances: c.Instances, Passing: c.Passing})
		for _, in := range svc.instances.all() {
			if in.Live(now) && (earliest.IsZero() || in.ExpiresAt.Before(earliest)) {
				earliest = in.ExpiresAt
			}
		}
	}
	slices.SortFunc(entries, func(a, b CatalogEntry) int { return strings.Compare(a.Name, b.Name) })
	return entries, earliest
}

// catalogBody is the JSON answer of GET /api/v1/services.
type catalogBody struct {
	Index    uint64         `json:"index"`
	Services []CatalogEntry `json:"services"`
}

// CatalogJSON returns the encoded catalogue, {"index","services"}, and the
// catalogue index, cached like LookupJSON. Callers must not modify the bytes.
func (v *View) CatalogJSON() ([]byte, uint64) {
	now := v.liveNow()
	v.mu.RLock()
	if e := v.catalogCache; e.fresh(v.version, now) {
		v.mu.RUnlock()
		v.hits.Add(1)
		return e.body, e.index
	}
	entries, earliest := v.catalogLocked(now)
	entry := cacheEntry{index: v.catalogIndex, version: v.version, validUntil: earliest}
	v.mu.RUnlock()

	v.misses.Add(1)
	entry.body = mustEncode(catalogBody{Index: entry.index, Services: entries})

	v.mu.Lock()
	if v.version == entry.version {
		v.catalogCache = entry
	}
	v.mu.Unlock()
	return entry.body, entry.index
}

// mustEncode encodes the view's own answer types, which hold nothing that
// JSON cannot encode.
func mustEncode(body any) []byte {
	b, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("view: encode %T: %v", body, err))
	}
	return append(b, '\n')
}
