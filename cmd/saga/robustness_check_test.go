package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The robustness checker: the recorded history of a run (robustness_test.go)
// and the rules it must obey.
//
// The model. A run has one or more sagas on one store, a few services,
// and clients. Every instance id belongs to one client, which alone writes
// it, one request at a time: it registers the id (a fresh id, so the answer
// is 201 and the event "registered") and may later deregister it (204,
// "deregistered"). Nothing expires: the TTLs outlast the run. So the state
// of an id at any moment is decided by its owner's writes alone, and a
// write's effect is certain once it is acknowledged (a 2xx answer), absent
// when it is refused (a 4xx answer), and unknown otherwise (a 5xx or no
// answer): from the start of such a write on, its id is left out of every
// rule except "events" (which then allows 0 or 1 event).
//
// Every request is recorded with the time it was sent (start) and the time
// its whole answer was read (end), on the test's clock. A read is a lookup
// (GET /api/v1/services/{svc}?status=any, which lists the instances), a
// blocking lookup (the same with ?index=N&wait=…), or a get
// (GET …/instances/{id}: 200 is present, 404 absent). For a read r and an
// id of its service, let w be the owner's last acknowledged write of the id
// that ended before r started. If some write of the id was in flight during
// r (started before r ended and did not end before r started), r may show
// either state and nothing is required. Otherwise r must show w's effect
// (present after a register, absent after a deregister):
//
//   - read-your-writes: when r went through the saga that acknowledged w;
//   - agreement: when r went through another saga and started at least
//     agreeWithin (1 s) after w was acknowledged;
//   - no-phantom: when there is no such w (nothing was written yet), r
//     must not show the id; nor may it show an id that nobody wrote.
//
// Between the acknowledgement and agreeWithin, a read through another saga
// may show either state.
//
//   - monotonic-index: on one saga and service, a read that starts after
//     another read ended never answers a lower index (lookups, blocking
//     lookups, and the X-Saga-Index of a get that found the instance).
//   - events: every saga's event stream, opened before the first write and
//     still open at the end, carries exactly one "registered" event for
//     every acknowledged register and exactly one "deregistered" event for
//     every acknowledged deregister, and no other event.
//   - event-order: on each stream, one service's indexes strictly increase.
//   - event-index: one change carries the same index on every saga.
//   - store: at the end, the store holds exactly the ids that were
//     acknowledged as registered and not acknowledged as deregistered, and
//     its index for the service counts the acknowledged changes (each
//     change moves it by exactly one). When the store cannot be read from
//     outside (the embedded store, which its saga holds open), that model
//     is taken as the store's state.
//   - final-state, final-index: once writes stopped, and agreeWithin
//     later, every saga's lookup lists exactly the store's ids at exactly
//     its index.
//   - final-blocking: a blocking lookup at the last index that saga's
//     blocking loop saw answers with the same ids and index.
//   - request-failed: the run injects no faults, so every write is
//     acknowledged and every read answers 200 (or 404 for a get).
//
// Times in the report are offsets from the start of the run.

// opKind is what a recorded request did.
type opKind string

const (
	opRegister   opKind = "register"   // POST …/instances
	opDeregister opKind = "deregister" // DELETE …/instances/{id}
	opLookup     opKind = "lookup"     // GET /api/v1/services/{svc}?status=any
	opBlocking   opKind = "blocking"   // the same with index= and wait=
	opGet        opKind = "get"        // GET …/instances/{id}
)

// op is one recorded request and its answer.
type op struct {
	Client     string
	Saga       string
	Kind       opKind
	Service    string
	ID         string // register, deregister and get
	Start, End time.Time
	Status     int    // the HTTP status; 0 when no answer came
	Err        string // a transport or decoding error
	AskedIndex uint64 // blocking: the index it waited on
	Index      uint64 // lookups: the answer's index; get: X-Saga-Index
	IDs        []string
}

func (o *op) isWrite() bool { return o.Kind == opRegister || o.Kind == opDeregister }

// acked reports whether a write was acknowledged: its change is made.
func (o *op) acked() bool {
	if o.Err != "" {
		return false
	}
	switch o.Kind {
	case opRegister:
		return o.Status == 200 || o.Status == 201
	case opDeregister:
		return o.Status == 204
	}
	return false
}

// refused reports whether a write was refused: its change is not made.
func (o *op) refused() bool { return o.Err == "" && o.Status >= 400 && o.Status < 500 }

// uncertain reports whether a write's outcome is unknown.
func (o *op) uncertain() bool { return o.isWrite() && !o.acked() && !o.refused() }

// answered reports whether a read's answer tells anything, and present
// whether a get found the instance.
func (o *op) answered() bool {
	if o.Err != "" {
		return false
	}
	if o.Kind == opGet {
		return o.Status == 200 || o.Status == 404
	}
	return o.Status == 200
}

// shows reports whether a read that answered lists id.
func (o *op) shows(id string) bool {
	if o.Kind == opGet {
		return o.Status == 200
	}
	return slices.Contains(o.IDs, id)
}

// streamEvent is one event a saga's stream carried.
type streamEvent struct {
	Type    string
	Service string
	ID      string
	Index   uint64
}

// stream is everything one saga's event stream carried during the run.
type stream struct {
	Saga   string
	Events []streamEvent
	Ended  bool // the stream closed before the end of the run
}

// storeState is what the store holds for one service.
type storeState struct {
	IDs   []string
	Index uint64
}

// history is a recorded run.
type history struct {
	Start    time.Time
	Sagas    []string
	Services []string
	Ops      []op
	Streams  []stream
	// Final holds, per saga and service, the lookup and the blocking
	// lookup made once writes had stopped for agreeWithin.
	Final []op
	// Store is what the store holds at the end, by service; nil when it
	// cannot be read from outside (then the model stands for it).
	Store map[string]storeState
}

// violation is one broken rule.
type violation struct {
	Rule    string
	At      time.Time // the offending read's start, or the write concerned
	Saga    string
	Service string
	ID      string
	Want    string
	Got     string
}

// timeline is one id's writes, in the order its owner made them.
type timeline struct {
	service, id string
	writes      []*op
}

type checker struct {
	h          *history
	agree      time.Duration
	timelines  map[string]map[string]*timeline // service → id → writes
	violations []violation
}

// checkHistory returns every violation of the model in h, oldest first.
func checkHistory(h *history, agree time.Duration) []violation {
	c := &checker{h: h, agree: agree, timelines: map[string]map[string]*timeline{}}
	for i := range h.Ops {
		o := &h.Ops[i]
		if !o.isWrite() {
			continue
		}
		byID := c.timelines[o.Service]
		if byID == nil {
			byID = map[string]*timeline{}
			c.timelines[o.Service] = byID
		}
		tl := byID[o.ID]
		if tl == nil {
			tl = &timeline{service: o.Service, id: o.ID}
			byID[o.ID] = tl
		}
		tl.writes = append(tl.writes, o)
	}
	for _, byID := range c.timelines {
		for _, tl := range byID {
			slices.SortStableFunc(tl.writes, func(a, b *op) int { return a.Start.Compare(b.Start) })
		}
	}
	c.checkRequests()
	c.checkReads()
	c.checkMonotonic()
	c.checkEvents()
	c.checkFinal()
	slices.SortStableFunc(c.violations, func(a, b violation) int { return a.At.Compare(b.At) })
	return c.violations
}

func (c *checker) add(v violation) { c.violations = append(c.violations, v) }

// at is t as an offset from the start of the run.
func (c *checker) at(t time.Time) string {
	return fmt.Sprintf("%.3fs", t.Sub(c.h.Start).Seconds())
}

func (c *checker) checkRequests() {
	for i := range c.h.Ops {
		o := &c.h.Ops[i]
		ok := o.acked()
		if !o.isWrite() {
			ok = o.answered()
		}
		if ok {
			continue
		}
		got := fmt.Sprintf("status %d", o.Status)
		if o.Err != "" {
			got = o.Err
		}
		c.add(violation{Rule: "request-failed", At: o.Start, Saga: o.Saga, Service: o.Service, ID: o.ID,
			Want: fmt.Sprintf("%s by %s to succeed", o.Kind, o.Client), Got: got})
	}
}

// expectation is what a read must show of one id, if anything.
type expectation struct {
	required bool
	present  bool
	rule     string
	by       *op // the write that decided it; nil for no-phantom
}

// expect applies the model's read rules to one id and one read.
func (c *checker) expect(tl *timeline, r *op) expectation {
	var last *op
	for _, w := range tl.writes {
		if w.refused() || !w.Start.Before(r.End) {
			continue // no effect, or sent after the read was answered
		}
		if w.uncertain() || !w.End.Before(r.Start) {
			return expectation{} // unknown outcome, or in flight during the read
		}
		last = w // acknowledged before the read started
	}
	switch {
	case last == nil:
		return expectation{required: true, rule: "no-phantom"}
	case last.Saga == r.Saga:
		return expectation{required: true, present: last.Kind == opRegister, rule: "read-your-writes", by: last}
	case r.Start.Sub(last.End) >= c.agree:
		return expectation{required: true, present: last.Kind == opRegister, rule: "agreement", by: last}
	}
	return expectation{}
}

func (c *checker) checkReads() {
	for i := range c.h.Ops {
		r := &c.h.Ops[i]
		if r.isWrite() || !r.answered() {
			continue
		}
		byID := c.timelines[r.Service]
		if r.Kind == opGet {
			c.checkRead(r, r.ID, byID[r.ID])
			continue
		}
		for id, tl := range byID {
			c.checkRead(r, id, tl)
		}
		for _, id := range r.IDs {
			if byID[id] == nil {
				c.checkRead(r, id, nil)
			}
		}
	}
}

func (c *checker) checkRead(r *op, id string, tl *timeline) {
	e := expectation{required: true, rule: "no-phantom"}
	if tl != nil {
		e = c.expect(tl, r)
	}
	seen := r.shows(id)
	if !e.required || seen == e.present {
		return
	}
	want := "absent: never registered before the read"
	if e.by != nil {
		state := "present"
		if !e.present {
			state = "absent"
		}
		want = fmt.Sprintf("%s: %s by %s through %s, acknowledged at %s", state, e.by.Kind, e.by.Client, e.by.Saga, c.at(e.by.End))
	}
	c.add(violation{Rule: e.rule, At: r.Start, Saga: r.Saga, Service: r.Service, ID: id, Want: want,
		Got: c.describeRead(r, seen)})
}

// describeRead says what a read showed of an id.
func (c *checker) describeRead(r *op, seen bool) string {
	span := fmt.Sprintf("read %s–%s by %s", c.at(r.Start), c.at(r.End), r.Client)
	switch {
	case r.Kind == opGet:
		return fmt.Sprintf("get answered %d (index %d), %s", r.Status, r.Index, span)
	case seen:
		return fmt.Sprintf("listed by %s at index %d, %s", r.Kind, r.Index, span)
	}
	return fmt.Sprintf("missing from %s at index %d (%d instances), %s", r.Kind, r.Index, len(r.IDs), span)
}

func (c *checker) checkMonotonic() {
	type key struct{ saga, service string }
	groups := map[key][]*op{}
	for i := range c.h.Ops {
		r := &c.h.Ops[i]
		if r.isWrite() || !r.answered() || (r.Kind == opGet && r.Status != 200) {
			continue
		}
		k := key{r.Saga, r.Service}
		groups[k] = append(groups[k], r)
	}
	for _, reads := range groups {
		byStart := slices.Clone(reads)
		slices.SortFunc(byStart, func(a, b *op) int { return a.Start.Compare(b.Start) })
		byEnd := slices.Clone(reads)
		slices.SortFunc(byEnd, func(a, b *op) int { return a.End.Compare(b.End) })
		var highest *op // the read with the highest index among those ended so far
		j := 0
		for _, r := range byStart {
			for ; j < len(byEnd) && byEnd[j].End.Before(r.Start); j++ {
				if highest == nil || byEnd[j].Index > highest.Index {
					highest = byEnd[j]
				}
			}
			if highest != nil && r.Index < highest.Index {
				c.add(violation{Rule: "monotonic-index", At: r.Start, Saga: r.Saga, Service: r.Service, ID: r.ID,
					Want: fmt.Sprintf("index ≥ %d (a %s by %s ended at %s)", highest.Index, highest.Kind, highest.Client, c.at(highest.End)),
					Got:  fmt.Sprintf("index %d from a %s by %s, read %s–%s", r.Index, r.Kind, r.Client, c.at(r.Start), c.at(r.End))})
			}
		}
	}
}

// eventType is the event an acknowledged write causes.
func eventType(k opKind) string {
	if k == opDeregister {
		return "deregistered"
	}
	return "registered"
}

func (c *checker) checkEvents() {
	type key struct{ typ, service, id string }
	writes := map[key]*op{}
	for i := range c.h.Ops {
		w := &c.h.Ops[i]
		if w.acked() || w.uncertain() {
			writes[key{eventType(w.Kind), w.Service, w.ID}] = w
		}
	}
	type seenAt struct {
		saga  string
		index uint64
	}
	first := map[key]seenAt{}
	for _, s := range c.h.Streams {
		if s.Ended {
			c.add(violation{Rule: "events", At: c.h.Start, Saga: s.Saga, Want: "the event stream open until the end",
				Got: fmt.Sprintf("it ended after %d events", len(s.Events))})
		}
		counts := map[key]int{}
		last := map[string]uint64{}
		for _, ev := range s.Events {
			k := key{ev.Type, ev.Service, ev.ID}
			counts[k]++
			if prev, ok := last[ev.Service]; ok && ev.Index <= prev {
				c.add(violation{Rule: "event-order", At: c.eventTime(writes[k]), Saga: s.Saga, Service: ev.Service, ID: ev.ID,
					Want: fmt.Sprintf("an index above %d", prev), Got: fmt.Sprintf("%s at index %d", ev.Type, ev.Index)})
			}
			last[ev.Service] = ev.Index
			if f, ok := first[k]; !ok {
				first[k] = seenAt{s.Saga, ev.Index}
			} else if f.index != ev.Index && counts[k] == 1 {
				c.add(violation{Rule: "event-index", At: c.eventTime(writes[k]), Saga: s.Saga, Service: ev.Service, ID: ev.ID,
					Want: fmt.Sprintf("%s at index %d, as on %s", ev.Type, f.index, f.saga), Got: fmt.Sprintf("index %d", ev.Index)})
			}
		}
		for k, w := range writes {
			n := counts[k]
			if n == 1 || (n == 0 && w.uncertain()) {
				continue
			}
			c.add(violation{Rule: "events", At: w.End, Saga: s.Saga, Service: k.service, ID: k.id,
				Want: fmt.Sprintf("one %s event (%s by %s through %s, acknowledged at %s)", k.typ, w.Kind, w.Client, w.Saga, c.at(w.End)),
				Got:  fmt.Sprintf("%d", n)})
		}
		for _, k := range slices.SortedFunc(maps.Keys(counts), func(a, b key) int {
			return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.id, b.id), cmp.Compare(a.typ, b.typ))
		}) {
			if writes[k] == nil {
				c.add(violation{Rule: "events", At: c.h.Start, Saga: s.Saga, Service: k.service, ID: k.id,
					Want: "no event without an acknowledged write", Got: fmt.Sprintf("%d %s events", counts[k], k.typ)})
			}
		}
	}
}

// eventTime is when the write behind an event was acknowledged, for
// ordering the report.
func (c *checker) eventTime(w *op) time.Time {
	if w == nil {
		return c.h.Start
	}
	return w.End
}

// model is the state the acknowledged writes leave behind for a service:
// the ids, the number of acknowledged changes, and the ids and number of
// changes whose outcome is unknown.
type model struct {
	ids       map[string]bool
	changes   uint64
	uncertain map[string]bool
	maybe     uint64
}

func (c *checker) model(service string) model {
	m := model{ids: map[string]bool{}, uncertain: map[string]bool{}}
	for id, tl := range c.timelines[service] {
		for _, w := range tl.writes {
			switch {
			case w.uncertain():
				m.uncertain[id] = true
				m.maybe++
			case w.acked():
				m.changes++
				m.ids[id] = w.Kind == opRegister
			}
		}
		if !m.ids[id] {
			delete(m.ids, id)
		}
	}
	return m
}

// setDiff describes the difference between what a set should hold and what
// it does, leaving out ids whose state is unknown.
func setDiff(want map[string]bool, got []string, skip map[string]bool) string {
	gotSet := map[string]bool{}
	for _, id := range got {
		gotSet[id] = true
	}
	var missing, extra []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if !gotSet[id] && !skip[id] {
			missing = append(missing, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(gotSet)) {
		if !want[id] && !skip[id] {
			extra = append(extra, id)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("missing %s, extra %s", abbreviate(missing), abbreviate(extra))
}

func abbreviate(ids []string) string {
	const most = 8
	if len(ids) <= most {
		return "[" + strings.Join(ids, " ") + "]"
	}
	return fmt.Sprintf("[%s … and %d more]", strings.Join(ids[:most], " "), len(ids)-most)
}

func (c *checker) checkFinal() {
	end := c.h.Start
	for i := range c.h.Ops {
		if c.h.Ops[i].End.After(end) {
			end = c.h.Ops[i].End
		}
	}
	for _, service := range c.h.Services {
		m := c.model(service)
		truth := storeState{IDs: slices.Sorted(maps.Keys(m.ids)), Index: m.changes}
		indexKnown := m.maybe == 0
		if st, ok := c.h.Store[service]; ok {
			if d := setDiff(m.ids, st.IDs, m.uncertain); d != "" {
				c.add(violation{Rule: "store", At: end, Service: service,
					Want: fmt.Sprintf("the store to hold the %d acknowledged ids", len(m.ids)), Got: d})
			}
			if st.Index < m.changes || st.Index > m.changes+m.maybe {
				c.add(violation{Rule: "store", At: end, Service: service,
					Want: fmt.Sprintf("the store's index in [%d, %d] (acknowledged changes, plus those of unknown outcome)", m.changes, m.changes+m.maybe),
					Got:  fmt.Sprintf("index %d", st.Index)})
			}
			want := map[string]bool{}
			for _, id := range st.IDs {
				want[id] = true
			}
			m.ids, truth, indexKnown = want, st, true
		}
		for i := range c.h.Final {
			f := &c.h.Final[i]
			if f.Service != service {
				continue
			}
			rule := "final-state"
			if f.Kind == opBlocking {
				rule = "final-blocking"
			}
			if !f.answered() {
				c.add(violation{Rule: rule, At: f.Start, Saga: f.Saga, Service: service, Want: "a 200 answer",
					Got: fmt.Sprintf("status %d %s", f.Status, f.Err)})
				continue
			}
			if d := setDiff(m.ids, f.IDs, m.uncertain); d != "" {
				c.add(violation{Rule: rule, At: f.Start, Saga: f.Saga, Service: service,
					Want: fmt.Sprintf("the store's %d instances", len(truth.IDs)),
					Got:  fmt.Sprintf("%d instances at index %d: %s", len(f.IDs), f.Index, d)})
			}
			if indexKnown && f.Index != truth.Index {
				if rule == "final-state" {
					rule = "final-index"
				}
				c.add(violation{Rule: rule, At: f.Start, Saga: f.Saga, Service: service,
					Want: fmt.Sprintf("the store's index %d", truth.Index), Got: fmt.Sprintf("index %d", f.Index)})
			}
		}
	}
}

// describeViolations is the failure report: the count by rule, then the
// first few violations in time order, each (rule, saga, instance) once
// with the number of times it recurred.
func describeViolations(h *history, vs []violation, first int) string {
	type place struct{ rule, saga, service, id string }
	counts := map[string]int{}
	instances := map[string]map[place]bool{}
	repeats := map[place]int{}
	for _, v := range vs {
		p := place{v.Rule, v.Saga, v.Service, v.ID}
		counts[v.Rule]++
		if instances[v.Rule] == nil {
			instances[v.Rule] = map[place]bool{}
		}
		instances[v.Rule][p] = true
		repeats[p]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d violations:", len(vs))
	for _, rule := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, " %s %d (%d distinct saga/service/id);", rule, counts[rule], len(instances[rule]))
	}
	line := func(v violation, again int) string {
		where := strings.TrimSpace(v.Saga + " " + strings.Trim(v.Service+"/"+v.ID, "/"))
		if again > 0 {
			where += fmt.Sprintf(" (+%d later)", again)
		}
		return fmt.Sprintf("\n  %8.3fs %-16s %s\n            want %s\n            saw  %s",
			v.At.Sub(h.Start).Seconds(), v.Rule, where, v.Want, v.Got)
	}
	shown := map[place]bool{}
	var lines, end []string
	for _, v := range vs {
		p := place{v.Rule, v.Saga, v.Service, v.ID}
		if atEnd(v.Rule) {
			end = append(end, line(v, 0))
			continue
		}
		if shown[p] || len(lines) == first {
			continue
		}
		shown[p] = true
		lines = append(lines, line(v, repeats[p]-1))
	}
	if len(lines) > 0 {
		fmt.Fprintf(&b, "\nthe first %d, each rule, saga and instance once:%s", len(lines), strings.Join(lines, ""))
	}
	if len(end) > 0 {
		fmt.Fprintf(&b, "\nat the end:%s", strings.Join(end, ""))
	}
	return b.String()
}

// atEnd reports whether a rule is about the state at the end of the run;
// the report lists every violation of those.
func atEnd(rule string) bool {
	return rule == "store" || strings.HasPrefix(rule, "final-")
}
