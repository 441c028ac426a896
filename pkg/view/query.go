package view

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// Fields picks the keys of each instance in the encoded answer
// (LookupJSON); the zero value is every key.
type Query struct {
	Tags   []string
	Meta   []MetaMatch
	Status StatusFilter
	Fields Fields
}

// Fields is a set of an instance's JSON keys, for a lean answer: each
// instance in it carries only those keys, in their usual order. The zero
// value is the full form, every key; so is the set of every key.
type Fields uint16

// The keys of an instance, in the order the full form writes them.
const (
	fieldService Fields = 1 << iota
	fieldID
	fieldAddress
	fieldPort
	fieldTags
	fieldMetadata
	fieldTTLSeconds
	fieldStatus
	fieldRegisteredAt
	fieldLastHeartbeat
	fieldExpiresAt
	fieldChecks // only on instances that have checks, as in the full form
	allFields   = 1<<iota - 1
)

// fieldNames are the JSON keys of the fields, bit by bit.
var fieldNames = [...]string{
	"service", "id", "address", "port", "tags", "metadata", "ttl_seconds",
	"status", "registered_at", "last_heartbeat", "expires_at", "checks",
}

// What heartbeats and check results change. An answer that shows neither
// goes stale only when the service changes or an instance in it expires,
// however often its instances heartbeat: for a big service it is encoded
// once per change instead of every renewSlack.
const (
	deadlineFields = fieldLastHeartbeat | fieldExpiresAt
	checkFields    = fieldChecks
)

// FieldNames lists the names ParseFields takes, in their canonical order.
func FieldNames() []string { return slices.Clone(fieldNames[:]) }

// ParseFields reads a list of instance keys (FieldNames) into a set. A
// name that is empty or no key is an error naming it. Every key is the
// full form, the zero Fields.
func ParseFields(names []string) (Fields, error) {
	var f Fields
	for _, name := range names {
		i := slices.Index(fieldNames[:], name)
		if i < 0 {
			return 0, fmt.Errorf("%q is not an instance field; want a comma-separated list of %s", name, strings.Join(fieldNames[:], ", "))
		}
		f |= 1 << i
	}
	if f == allFields {
		return 0, nil
	}
	return f, nil
}

// String lists the keys of the set, comma-separated; "" for the full form.
func (f Fields) String() string {
	if f == 0 {
		return ""
	}
	var names []string
	for i, name := range fieldNames {
		if f&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ",")
}

// has reports whether the set shows any of the keys in x.
func (f Fields) has(x Fields) bool { return f == 0 || f&x != 0 }

// key identifies the query in the cache: the same filters in another order
// share one entry; each set of fields has its own.
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
	return string(q.Status) + "\x01" + strings.Join(tags, "\x00") + "\x01" + strings.Join(meta, "\x01") +
		"\x02" + strconv.FormatUint(uint64(q.Fields&allFields), 16)
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
// heartbeats (renewed) and check results (checked) make it stale too when
// it shows what they change (see Fields), after renewSlack for a big one.
// An entry is shared by pointer: its gzip form is made once, for every
// reader (Answer.Gzip). Its fields but gz are set before it is shared and
// then only changed under the view's lock.
type cacheEntry struct {
	body       []byte
	index      uint64
	version    uint64
	renewed    uint64
	checked    uint64
	fields     Fields
	count      int // instances in the answer
	big        bool
	madeAt     time.Time // by the clock, for renewSlack
	validUntil time.Time // zero when the answer holds no instance

	// owner is the service whose cache holds the entry; nil once dropped
	// (or never kept, or the catalogue's). size is what the entry counts
	// against cacheBudget: its body, and its gzip form once made.
	owner *service
	size  int64

	gzOnce sync.Once
	gz     []byte // set inside gzOnce

	// users counts the readers of a big entry's body, with the dropped
	// bit once the cache let go of it; the last one hands the body to
	// spares (reuse.go).
	users  atomic.Int64
	spares *spareBuffers
}

func (e *cacheEntry) fresh(version uint64, now time.Time) bool {
	return e != nil && e.body != nil && e.version == version && (e.validUntil.IsZero() || now.Before(e.validUntil))
}

// overtaken reports whether heartbeats or check results changed what the
// entry shows since it was made.
func (e *cacheEntry) overtaken(svc *service) bool {
	return (e.fields.has(deadlineFields) && e.renewed != svc.renewed) ||
		(e.fields.has(checkFields) && e.checked != svc.checked)
}

// freshFor reports whether the entry still answers for svc.
func (e *cacheEntry) freshFor(svc *service, now, wall time.Time) bool {
	return e.fresh(svc.version, now) &&
		(!e.overtaken(svc) || (e.big && wall.Sub(e.madeAt) < renewSlack))
}

// outlived reports whether the entry was only overtaken by time: its
// earliest deadline passed, but heartbeats it does not show moved
// deadlines since it was made, so every instance in it may still be live
// (LookupJSON checks, and then keeps it).
func (e *cacheEntry) outlived(svc *service) bool {
	return e != nil && e.body != nil && e.version == svc.version && !e.overtaken(svc) &&
		e.renewed != svc.renewed && !e.validUntil.IsZero()
}

// flight is one encoding of a lookup that concurrent readers of the same
// query and the same state of the service share.
type flight struct {
	done    chan struct{}
	version uint64
	renewed uint64
	checked uint64
	fields  Fields
	entry   *cacheEntry // set before done is closed
	// joiners counts the readers waiting for the flight; each is counted
	// as a user of the entry before done is closed.
	joiners int64
}

// current reports whether the flight encodes the state svc is in, or one
// that only heartbeats have overtaken, for a big service (as its cached
// answer would be) or for fields that do not show them.
func (f *flight) current(svc *service) bool {
	if f.version != svc.version {
		return false
	}
	stamp := cacheEntry{fields: f.fields, renewed: f.renewed, checked: f.checked}
	return !stamp.overtaken(svc) || svc.instances.len() >= bigAnswer
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
// {"service","index","instances"}, and the service's index (see
// LookupAnswer). Callers must not modify the bytes.
func (v *View) LookupJSON(serviceName string, q Query) ([]byte, uint64) {
	a := v.LookupAnswer(serviceName, q)
	return a.Body, a.Index
}

// LookupAnswer returns the encoded answer of a lookup,
// {"service","index","instances"}, with each instance's keys as q.Fields
// picks them, and the service's index. The encoding is cached per service
// and query until the service changes, an instance in the answer passes
// its deadline, or heartbeats or check results change what it shows; and
// concurrent readers of one query share one encoding. Sorting and encoding
// happen outside the view's lock, so a big service never holds up the
// readers and writers of others.
func (v *View) LookupAnswer(serviceName string, q Query) Answer {
	now, wall := v.liveNow(), v.clock.Now()
	q.Fields = q.Fields.normal()
	key := q.key()

	v.mu.RLock()
	svc := v.services[serviceName]
	if svc == nil {
		v.mu.RUnlock()
		v.misses.Add(1)
		return v.emptyLookup(serviceName)
	}
	if e := svc.cache[key]; e.freshFor(svc, now, wall) {
		a := v.answerOf(e)
		v.mu.RUnlock()
		v.hits.Add(1)
		return a
	}
	v.mu.RUnlock()

	v.mu.Lock()
	svc = v.services[serviceName]
	if svc == nil {
		v.mu.Unlock()
		v.misses.Add(1)
		return v.emptyLookup(serviceName)
	}
	if e := svc.cache[key]; e.freshFor(svc, now, wall) {
		a := v.answerOf(e)
		v.mu.Unlock()
		v.hits.Add(1)
		return a
	}
	// Join an encoding under way of the same state, or of one that only
	// heartbeats have overtaken where the answer may lag them.
	if f := svc.flights[key]; f != nil && f.current(svc) {
		f.joiners++
		v.mu.Unlock()
		<-f.done
		v.hits.Add(1)
		return v.answerTaken(f.entry)
	}
	f := &flight{done: make(chan struct{}), version: svc.version, renewed: svc.renewed, checked: svc.checked, fields: q.Fields}
	if svc.flights == nil {
		svc.flights = map[string]*flight{}
	}
	svc.flights[key] = f
	v.mu.Unlock()

	// Copy the pointers under the read lock (short even for a big
	// service), then filter, sort and encode with no lock held.
	v.mu.RLock()
	list := svc.instances.pointers()
	index := svc.index
	prev := svc.cache[key]
	outlived := prev.outlived(svc)
	if outlived {
		prev.take() // held until it is handed out or let go below
	}
	v.mu.RUnlock()
	found, earliest := collect(list, q, now)

	// An answer that hides deadlines, whose earliest deadline passed while
	// heartbeats moved them: if every instance in it is still live, it
	// still holds. The service has not changed since (its version), and an
	// instance renewed past its deadline changes it (renewLocked), so the
	// instances live now are among those in it: the same count, the same
	// ones.
	if outlived && len(found) == prev.count && prev.index == index {
		v.mu.Lock()
		if prev.owner == svc && svc.version == prev.version {
			prev.validUntil = earliest
		}
		v.landLocked(svc, key, f, prev)
		v.mu.Unlock()
		v.hits.Add(1)
		return v.answerTaken(prev)
	}
	if outlived {
		prev.release()
	}

	v.misses.Add(1)
	big := len(found) >= bigAnswer
	var buf []byte
	if big {
		v.bigEncodes <- struct{}{}
		buf = v.spares.get(lookupSizeHint(serviceName, found, q.Fields))
	} else {
		buf = make([]byte, 0, lookupSizeHint(serviceName, found, q.Fields))
	}
	sortByID(found)
	body := appendLookup(buf, serviceName, index, found, q.Fields)
	if big {
		<-v.bigEncodes
	}
	e := &cacheEntry{
		body: body, index: index, version: f.version, renewed: f.renewed, checked: f.checked,
		fields: q.Fields, count: len(found), big: big, madeAt: wall, validUntil: earliest,
		spares: &v.spares,
	}
	e.take() // this reader's

	v.mu.Lock()
	// Keep the entry only if the service did not change while encoding.
	if v.services[serviceName] == svc && svc.version == f.version {
		v.cacheLocked(svc, key, e)
	} else {
		e.drop()
	}
	v.landLocked(svc, key, f, e)
	v.mu.Unlock()
	return v.answerTaken(e)
}

// landLocked ends flight f with entry e: e counts a user for each reader
// that joined f, and they are woken.
func (v *View) landLocked(svc *service, key string, f *flight, e *cacheEntry) {
	if svc.flights[key] == f {
		delete(svc.flights, key)
	}
	if e.big {
		e.users.Add(f.joiners)
	}
	f.entry = e
	close(f.done)
}

// emptyLookup is the answer for a service the view has never seen.
func (v *View) emptyLookup(serviceName string) Answer {
	return Answer{Body: appendLookup(nil, serviceName, 0, nil, 0), view: v}
}

// normal is the set as the cache keys it: the full form as zero.
func (f Fields) normal() Fields {
	if f &= allFields; f == allFields {
		return 0
	}
	return f
}

// cacheLocked keeps an answer within maxCachedQueries per service and
// cacheBudget overall, dropping other services' answers to make room.
func (v *View) cacheLocked(svc *service, key string, e *cacheEntry) {
	size := int64(cap(e.body)) // a reused buffer may be longer than its answer
	if size > cacheBudget/2 {
		e.drop()
		return // would leave room for little else
	}
	if old, ok := svc.cache[key]; ok {
		v.forgetLocked(old)
		delete(svc.cache, key)
	}
	if len(svc.cache) >= maxCachedQueries {
		v.dropCacheLocked(svc)
	}
	if svc.cache == nil {
		svc.cache = map[string]*cacheEntry{}
	}
	e.owner, e.size = svc, size
	svc.cache[key] = e
	v.cacheBytes += size
	v.makeRoomLocked(svc)
}

// makeRoomLocked brings the cache back within cacheBudget: it drops other
// services' answers (a random victim each time), then svc's own.
func (v *View) makeRoomLocked(svc *service) {
	for _, other := range v.services { // map order: a random victim each time
		if v.cacheBytes <= cacheBudget {
			return
		}
		if other != svc {
			v.dropCacheLocked(other)
		}
	}
	if v.cacheBytes > cacheBudget {
		v.dropCacheLocked(svc)
	}
}

// dropCacheLocked forgets a service's cached answers.
func (v *View) dropCacheLocked(svc *service) {
	for _, e := range svc.cache {
		v.forgetLocked(e)
	}
	svc.cache = nil
}

// forgetLocked takes an entry out of the budget; readers that hold it
// keep it.
func (v *View) forgetLocked(e *cacheEntry) {
	e.drop()
	if e.owner != nil {
		v.cacheBytes -= e.size
		e.owner, e.size = nil, 0
	}
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
// catalogue index (see CatalogAnswer). Callers must not modify the bytes.
func (v *View) CatalogJSON() ([]byte, uint64) {
	a := v.CatalogAnswer()
	return a.Body, a.Index
}

// CatalogAnswer returns the encoded catalogue, {"index","services"}, and
// the catalogue index, cached like LookupAnswer.
func (v *View) CatalogAnswer() Answer {
	now := v.liveNow()
	v.mu.RLock()
	if e := v.catalogCache; e.fresh(v.version, now) {
		a := v.answerOf(e)
		v.mu.RUnlock()
		v.hits.Add(1)
		return a
	}
	entries, earliest := v.catalogLocked(now)
	entry := &cacheEntry{index: v.catalogIndex, version: v.version, validUntil: earliest}
	v.mu.RUnlock()

	v.misses.Add(1)
	entry.body = mustEncode(catalogBody{Index: entry.index, Services: entries})

	v.mu.Lock()
	if v.version == entry.version {
		v.catalogCache = entry
	}
	v.mu.Unlock()
	return v.answerTaken(entry) // a catalogue is never big: nothing to count
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
