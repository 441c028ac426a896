// Package checks runs the active health checks of SPEC §7: HTTP and TCP
// probes against registered instances, with their status changes written
// through the store as heartbeats with a status, so that every Saga,
// watcher and event stream sees them. With several Sagas on one store each
// instance's checks run on exactly one live member, chosen by rendezvous
// hashing over the members that announce themselves (Membership).
package checks

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/registry"
)

// Defaults of Options.
const (
	DefaultMaxConcurrent = 256
	// DefaultTick is how often the checker announces itself, re-reads the
	// members and follows the view.
	DefaultTick = time.Second
	// MemberTTL is how long a member counts as live after its last
	// announcement: a member that dies hands its checks over within
	// MemberTTL plus one tick.
	MemberTTL = 3 * time.Second
)

// Writer is what the checker asks of the store.
type Writer interface {
	Heartbeat(ctx context.Context, service, id string, status registry.Status, now time.Time) (registry.Event, error)
	Deregister(ctx context.Context, service, id string) (registry.Event, error)
}

// Source is where the checker learns which instances have checks (the
// view), and where it leaves their results.
type Source interface {
	Checked() ([]registry.Instance, uint64)
	CheckedVersion() uint64
	SetCheckResults(service, id string, registeredAt time.Time, checks []registry.Check)
}

// Membership is the set of Sagas sharing one store. The Redis store
// implements it; nil means this Saga alone.
type Membership interface {
	// Announce renews self's membership for ttl and returns the live
	// members, self included.
	Announce(ctx context.Context, self string, ttl time.Duration) ([]string, error)
	// Leave ends self's membership at once, so that the others take its
	// checks over without waiting for the TTL.
	Leave(ctx context.Context, self string) error
}

// Options configure a Checker. Store and View are required.
type Options struct {
	Store Writer
	View  Source
	// Apply receives every event the checker's writes cause (the view's
	// Apply, for read-your-writes); nil: none.
	Apply   func(registry.Event)
	Members Membership // nil: this Saga alone
	// Self names this Saga among the members; "": a random id.
	Self          string
	Policy        registry.CheckPolicy
	MaxConcurrent int            // probes at once; 0: DefaultMaxConcurrent
	Tick          time.Duration  // 0: DefaultTick
	Clock         registry.Clock // nil: the system clock
	Logger        *slog.Logger   // nil: discard
	Registerer    prometheus.Registerer
}

// Checker runs the checks of the instances this Saga owns.
type Checker struct {
	opts    Options
	logger  *slog.Logger
	prober  *prober
	metrics *metrics
	sem     chan struct{} // a slot per probe in flight

	ctx context.Context // the probes' and writes'; ends with Run

	mu      sync.Mutex
	closed  bool
	targets map[string]*target // by service/id
	members []string
	version uint64
	running sync.WaitGroup // probes and writes in flight
}

// New builds a checker; Run starts it.
func New(opts Options) *Checker {
	if opts.Clock == nil {
		opts.Clock = registry.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Self == "" {
		opts.Self = registry.NewID()
	}
	opts.MaxConcurrent = cmp.Or(opts.MaxConcurrent, DefaultMaxConcurrent)
	opts.Tick = cmp.Or(opts.Tick, DefaultTick)
	c := &Checker{
		opts:    opts,
		logger:  opts.Logger.With("component", "checks"),
		prober:  newProber(),
		sem:     make(chan struct{}, opts.MaxConcurrent),
		targets: map[string]*target{},
		ctx:     context.Background(),
	}
	c.metrics = newMetrics(opts.Registerer, c)
	return c
}

// Self is this Saga's member id.
func (c *Checker) Self() string { return c.opts.Self }

// Run follows the view and the members until ctx ends, then stops every
// check, waits for the probes in flight and leaves the membership.
func (c *Checker) Run(ctx context.Context) {
	probeCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.mu.Lock()
	c.ctx = probeCtx
	c.mu.Unlock()
	tick := time.NewTicker(c.opts.Tick)
	defer tick.Stop()
	for {
		c.reconcile(ctx)
		select {
		case <-ctx.Done():
			c.stop(cancel)
			return
		case <-tick.C:
		}
	}
}

// stop ends every target, waits for the work in flight and leaves.
func (c *Checker) stop(cancel context.CancelFunc) {
	c.mu.Lock()
	c.closed = true
	for key, t := range c.targets {
		t.stop()
		delete(c.targets, key)
	}
	c.mu.Unlock()
	cancel()
	c.running.Wait()
	if c.opts.Members != nil {
		ctx, done := context.WithTimeout(context.Background(), time.Second)
		defer done()
		if err := c.opts.Members.Leave(ctx, c.opts.Self); err != nil {
			c.logger.Warn("leaving the members failed; the others take over when the membership expires", "err", err)
		}
	}
}

// reconcile announces this member, then starts the checks this member
// owns and stops the others, when the members or the view changed.
func (c *Checker) reconcile(ctx context.Context) {
	members := []string{c.opts.Self}
	if c.opts.Members != nil {
		got, err := c.opts.Members.Announce(ctx, c.opts.Self, MemberTTL)
		switch {
		case err != nil && ctx.Err() == nil:
			// Keep the members last seen: a Saga cut off from the store
			// can write no result anyway.
			c.logger.Warn("announcing this Saga to the others failed", "err", err)
			c.mu.Lock()
			members = c.members
			c.mu.Unlock()
		case err == nil:
			members = got
		}
	}
	if len(members) == 0 {
		members = []string{c.opts.Self}
	}
	slices.Sort(members)
	members = slices.Compact(members)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	version := c.opts.View.CheckedVersion()
	if slices.Equal(members, c.members) && version == c.version && c.version != 0 {
		return
	}
	if !slices.Equal(members, c.members) {
		c.logger.Info("members changed", "members", len(members), "self", c.opts.Self)
	}
	startUp := c.members == nil
	instances, version := c.opts.View.Checked()
	c.members, c.version = members, version
	now := c.opts.Clock.Now()
	want := make(map[string]registry.Instance, len(instances))
	for _, in := range instances {
		key := in.Service + "/" + in.ID
		if in.Live(now) && Owner(members, key) == c.opts.Self {
			want[key] = in
		}
	}
	for key, t := range c.targets {
		if in, ok := want[key]; !ok || !t.in.RegisteredAt.Equal(in.RegisteredAt) {
			t.stop()
			delete(c.targets, key)
			if !ok {
				// Another member runs it now: drop this one's results.
				c.opts.View.SetCheckResults(t.in.Service, t.in.ID, t.in.RegisteredAt, registry.CheckDefinitions(t.in.Checks))
			}
		}
	}
	for key, in := range want {
		if _, ok := c.targets[key]; !ok {
			c.targets[key] = c.startTarget(in, startUp)
		}
	}
}

// Owned is how many instances' checks this Saga runs.
func (c *Checker) Owned() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.targets)
}

// begin admits one unit of work (a probe, a write), unless the checker
// has stopped.
func (c *Checker) begin() (context.Context, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	c.running.Add(1)
	return c.ctx, true
}

// jitter is a random duration in [0, d), so that checks that start
// together (a restart, a member's share taken over) spread out.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// errForbidden is a dial to an address that checks may never reach.
var errForbidden = errors.New("link-local and cloud metadata addresses are never checked")
