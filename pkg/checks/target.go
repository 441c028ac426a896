package checks

import (
	"errors"
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// target is one instance whose checks this Saga runs: a timer per check
// and one that renews the instance's deadline, each stopped with the
// target, so nothing sleeps on behalf of a check that is gone.
type target struct {
	c  *Checker
	in registry.Instance

	mu      sync.Mutex // guards stopped and the timers
	stopped bool
	timers  []*time.Timer
	renewal *time.Timer

	// writeMu serialises the results and the writes they cause, so the
	// store always gets the latest status last.
	specs     []spec // never modified once started
	writeMu   sync.Mutex
	states    []checkState
	written   registry.Status // the instance's status as last written or seen
	lastWrite time.Time
}

// spec is what one check probes.
type spec struct {
	def               registry.Check
	url               string // resolved target; "" when refused
	refused           string // why the target is refused
	interval, timeout time.Duration
}

// checkState is the result of one check as this Saga sees it.
type checkState struct {
	status              registry.Status
	successes, failures int
	output              string
	lastChecked         time.Time
	criticalSince       time.Time
}

// startTarget schedules the checks of in. At start-up a check's first run
// comes after a random part of half its interval, so a restart spreads
// out; later (a new registration, a dead member's share taken over) within
// a second, so a dead member's checks resume within MemberTTL and two
// ticks. The first renewal comes after a random part of a third of the TTL.
func (c *Checker) startTarget(in registry.Instance, startUp bool) *target {
	t := &target{c: c, in: in, written: in.Status}
	now := c.opts.Clock.Now()
	for _, def := range in.Checks {
		sp := spec{def: def.Definition(), interval: def.IntervalDuration(), timeout: def.TimeoutDuration()}
		if url, err := registry.CheckTarget(def, in.Address, in.Port, c.opts.Policy); err != nil {
			sp.refused = "target refused: " + err.Error()
		} else {
			sp.url = url
		}
		st := checkState{status: in.Status}
		if st.status == registry.StatusCritical {
			st.criticalSince = now // the clock of deregister_critical_after restarts on a takeover
		}
		t.specs = append(t.specs, sp)
		t.states = append(t.states, st)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, sp := range t.specs {
		first := sp.interval / 2
		if !startUp {
			first = min(first, time.Second)
		}
		t.timers = append(t.timers, time.AfterFunc(jitter(first), func() { t.run(i) }))
	}
	t.renewal = time.AfterFunc(jitter(t.renewEvery()), t.renew)
	return t
}

// renewEvery is how often the deadline is renewed when no status write
// renewed it: a third of the TTL, so two renewals may fail before expiry.
func (t *target) renewEvery() time.Duration { return max(t.in.TTL()/3, time.Second) }

// stop ends the target's timers; a probe in flight finds it stopped.
func (t *target) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	for _, tm := range t.timers {
		tm.Stop()
	}
	if t.renewal != nil {
		t.renewal.Stop()
	}
}

func (t *target) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

// again schedules the next run of check i (-1: the renewal) after d,
// unless the target stopped.
func (t *target) again(i int, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.stopped:
	case i < 0:
		t.renewal.Reset(d)
	default:
		t.timers[i].Reset(d)
	}
}

// run probes check i once, within the pool of concurrent probes, records
// the result and schedules the next run one interval later.
func (t *target) run(i int) {
	ctx, ok := t.c.begin()
	if !ok {
		return
	}
	defer t.c.running.Done()
	select {
	case t.c.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	sp := t.specs[i]
	if t.isStopped() {
		<-t.c.sem
		return
	}
	res := result{status: registry.StatusCritical, output: sp.refused}
	if sp.refused == "" {
		res = t.c.prober.probe(ctx, sp.def, sp.url, sp.timeout)
		t.c.metrics.observe(sp.def.Kind(), res)
	}
	<-t.c.sem
	t.record(i, res)
	t.again(i, sp.interval)
}

// record applies a probe's result to check i, with the damping of
// successes_before_passing and failures_before_critical (as Consul
// counts: warning is a success, critical a failure), and writes the
// instance's status when it changed.
func (t *target) record(i int, res result) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	if t.isStopped() {
		return
	}
	now := t.c.opts.Clock.Now()
	def := t.specs[i].def
	st := &t.states[i]
	st.output, st.lastChecked = res.output, now
	if res.status == registry.StatusCritical {
		st.failures, st.successes = st.failures+1, 0
		if st.failures >= max(def.FailuresBeforeCritical, 1) {
			st.status = registry.StatusCritical
		}
	} else {
		st.successes, st.failures = st.successes+1, 0
		if st.successes >= max(def.SuccessesBeforePassing, 1) {
			st.status = res.status
		}
	}
	if st.status != registry.StatusCritical {
		st.criticalSince = time.Time{}
	} else if st.criticalSince.IsZero() {
		st.criticalSince = now
	}
	t.c.opts.View.SetCheckResults(t.in.Service, t.in.ID, t.in.RegisteredAt, t.results())

	if st.status == registry.StatusCritical && now.Sub(st.criticalSince) >= def.DeregisterAfter() {
		t.deregister(i)
		return
	}
	if status := t.status(); status != t.written {
		t.write(status, now)
	}
}

// status is the instance's status: the worst of its checks'.
func (t *target) status() registry.Status {
	worst := registry.StatusPassing
	for _, st := range t.states {
		switch st.status {
		case registry.StatusCritical:
			return registry.StatusCritical
		case registry.StatusWarning:
			worst = registry.StatusWarning
		}
	}
	return worst
}

// results is the instance's checks with this Saga's latest results.
func (t *target) results() []registry.Check {
	out := make([]registry.Check, len(t.states))
	for i, st := range t.states {
		out[i] = t.specs[i].def
		if !st.lastChecked.IsZero() {
			at := st.lastChecked.UTC()
			out[i].Status, out[i].Output, out[i].LastChecked = st.status, st.output, &at
		}
	}
	return out
}

// write records a status (or, with "", renews the deadline) through the
// store: a status change is an updated event with a new index for every
// Saga. An instance that is gone stops its target. Callers hold writeMu.
func (t *target) write(status registry.Status, now time.Time) {
	ctx, ok := t.c.begin()
	if !ok {
		return
	}
	defer t.c.running.Done()
	ev, err := t.c.opts.Store.Heartbeat(ctx, t.in.Service, t.in.ID, status, now)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		t.stop() // deregistered or expired; the next reconcile forgets it
		return
	case err != nil:
		t.c.logger.Warn("writing a check's result failed; retrying at the next probe", "service", t.in.Service, "id", t.in.ID, "err", err)
		return
	}
	if status != "" {
		t.written = status
	}
	t.lastWrite = now
	if t.c.opts.Apply != nil {
		t.c.opts.Apply(ev)
	}
}

// renew keeps the deadline of the instance ahead, so it needs no
// heartbeats of its own, unless a status write already did.
func (t *target) renew() {
	t.writeMu.Lock()
	now := t.c.opts.Clock.Now()
	if !t.isStopped() && now.Sub(t.lastWrite) >= t.renewEvery()-t.renewEvery()/10 {
		t.write("", now)
	}
	t.writeMu.Unlock()
	t.again(-1, t.renewEvery())
}

// deregister removes an instance whose check i stayed critical for its
// deregister_critical_after.
func (t *target) deregister(i int) {
	ctx, ok := t.c.begin()
	if !ok {
		return
	}
	defer t.c.running.Done()
	ev, err := t.c.opts.Store.Deregister(ctx, t.in.Service, t.in.ID)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		t.c.logger.Warn("deregistering an instance critical for too long failed; retrying", "service", t.in.Service, "id", t.in.ID, "err", err)
		return
	}
	t.stop()
	if err == nil {
		t.c.logger.Info("deregistered an instance critical for too long", "service", t.in.Service, "id", t.in.ID,
			"check", i, "deregister_critical_after", t.specs[i].def.DeregisterAfter().String())
		if t.c.opts.Apply != nil {
			t.c.opts.Apply(ev)
		}
	}
}
