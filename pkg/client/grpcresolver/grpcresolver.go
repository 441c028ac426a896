// Package grpcresolver is a grpc-go name resolver for the "saga" scheme:
// a client dialling saga:///web, or saga://host:8030/web?tag=v2, gets the
// live instances of the service "web" from Saga as its addresses, kept
// current with blocking queries, for grpc's balancer to choose from.
//
//	conn, err := grpc.NewClient("saga:///web",
//		grpc.WithResolvers(grpcresolver.NewBuilder(grpcresolver.WithToken(secret))),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The target names the service in its path. Its authority, when there is
// one, is the Saga server as host:port; without one the server is the
// builder's (WithServer), else $SAGA_ADDR, else client.DefaultAddr. The
// query filters as a lookup does: tag= (repeated: every tag must match),
// meta=key:value (repeated) and status= ("passing" or "any"; by default
// passing and warning instances).
//
// Each address carries the instance's id, tags and metadata as attributes
// (InstanceID, Tags, Metadata), for a custom balancer to use. A service
// with no live instance gives an empty address list: grpc then fails RPCs
// with codes.Unavailable until an instance comes. When Saga cannot be
// asked, the resolver reports the error to grpc, which keeps using the
// addresses it had, and tries again with backoff.
//
// This package is apart from package client so that programs using the
// client without gRPC, the saga command among them, do not link grpc.
package grpcresolver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// Scheme is the target scheme the builder resolves.
const Scheme = "saga"

const (
	// minBackoff and maxBackoff bound the wait before a failed lookup is
	// tried again; it doubles with each failure in a row.
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// minResolveGap is the least time between two lookups that ResolveNow
	// forces. grpc asks for one whenever a connection fails, and each
	// cuts a blocking query short; several in a burst need one lookup.
	minResolveGap = time.Second
	// watchWait is how long one blocking query waits for a change, as
	// the server's default.
	watchWait = 5 * time.Minute
)

// fields are the instance keys the resolver uses (addresses, attributesOf):
// it asks for those only, an answer a fraction of the full one's size
// that the server keeps cached while heartbeats come in.
func fields() []string { return []string{"id", "address", "port", "tags", "metadata"} }

// Builder builds resolvers for the saga scheme. Pass it to
// grpc.WithResolvers, or to resolver.Register through Register.
type Builder struct {
	server     string // for targets without an authority; "": $SAGA_ADDR, else client.DefaultAddr
	tlsConfig  *tls.Config
	clientOpts []client.Option
}

// Option changes how NewBuilder builds a Builder.
type Option func(*Builder)

// WithServer is the Saga server of targets without an authority
// (saga:///web), as a URL or host:port, in place of $SAGA_ADDR and
// client.DefaultAddr. A target's own authority still wins.
func WithServer(addr string) Option {
	return func(b *Builder) { b.server = addr }
}

// WithToken sends secret as the bearer token of every lookup.
func WithToken(secret string) Option {
	return func(b *Builder) { b.clientOpts = append(b.clientOpts, client.WithToken(secret)) }
}

// WithTLS asks Saga over https, trusting what config trusts. It also makes
// a target's authority (saga://host:8030/web) an https server; pass an
// empty config for one with a certificate the system trusts.
func WithTLS(config *tls.Config) Option {
	return func(b *Builder) {
		b.tlsConfig = config
		b.clientOpts = append(b.clientOpts, client.WithTLS(config))
	}
}

// WithHTTPClient sends the lookups through hc (see client.WithHTTPClient:
// no overall Timeout, since blocking queries stay open for minutes).
func WithHTTPClient(hc *http.Client) Option {
	return func(b *Builder) { b.clientOpts = append(b.clientOpts, client.WithHTTPClient(hc)) }
}

// WithClientOptions passes any other options to the client of each resolver.
func WithClientOptions(opts ...client.Option) Option {
	return func(b *Builder) { b.clientOpts = append(b.clientOpts, opts...) }
}

// NewBuilder returns a builder for grpc.WithResolvers.
func NewBuilder(opts ...Option) *Builder {
	b := &Builder{}
	for _, opt := range opts {
		opt(b)
	}
	return b
}

// Register registers a builder made from opts with grpc, so that every
// ClientConn of the program resolves saga:// targets. Like
// resolver.Register, it must be called at start-up, before any dial; it
// returns the builder.
func Register(opts ...Option) *Builder {
	b := NewBuilder(opts...)
	resolver.Register(b)
	return b
}

// Scheme returns "saga".
func (b *Builder) Scheme() string { return Scheme }

// Build starts a resolver that follows the target's service. It fails only
// for a target it cannot read; Saga is asked in the background.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := parseTarget(target.URL)
	if err != nil {
		return nil, fmt.Errorf("saga resolver: target %q: %w", target.URL.String(), err)
	}
	c, err := client.New(b.serverOf(t), b.clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("saga resolver: target %q: %w", target.URL.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &sagaResolver{
		cc:        cc,
		client:    c,
		service:   t.service,
		lookup:    t.lookup,
		stop:      cancel,
		done:      make(chan struct{}),
		interrupt: func() {},
	}
	go r.watch(ctx)
	return r, nil
}

// serverOf is the Saga server to ask for t.
func (b *Builder) serverOf(t target) string {
	if t.authority != "" {
		if b.tlsConfig != nil {
			return "https://" + t.authority
		}
		return "http://" + t.authority
	}
	if b.server != "" {
		return b.server
	}
	if env := os.Getenv("SAGA_ADDR"); env != "" {
		return env
	}
	return client.DefaultAddr
}

// target is a saga:// dial target, read.
type target struct {
	authority string // host:port of the Saga server; "": the builder's
	service   string
	lookup    client.LookupOptions
}

// parseTarget reads saga://[host:port]/service[?tag=…&meta=k:v&status=…].
// Unknown parameters are refused rather than ignored, so a typo does not
// silently widen the set of addresses.
func parseTarget(u url.URL) (target, error) {
	t := target{authority: u.Host, service: strings.TrimPrefix(u.Path, "/")}
	t.lookup.Fields = fields()
	if u.Path == "" {
		t.service = u.Opaque // saga:web
	}
	if err := registry.ValidateName("service", t.service); err != nil {
		return target{}, err
	}
	q := u.Query()
	for name, values := range q {
		switch name {
		case "tag":
			for _, tag := range values {
				if tag == "" {
					return target{}, errors.New("tag: must not be empty")
				}
			}
			t.lookup.Tags = values
		case "meta":
			t.lookup.Meta = map[string]string{}
			for _, m := range values {
				key, value, ok := strings.Cut(m, ":")
				if !ok || key == "" {
					return target{}, fmt.Errorf("meta: %q must be key:value", m)
				}
				t.lookup.Meta[key] = value
			}
		case "status":
			if len(values) != 1 {
				return target{}, errors.New("status: give it once")
			}
			t.lookup.Status = values[0]
		default:
			return target{}, fmt.Errorf("unknown parameter %q: want tag, meta or status", name)
		}
	}
	return t, nil
}

// sagaResolver follows one service with blocking queries in a goroutine
// of its own (watch), until Close.
type sagaResolver struct {
	cc      resolver.ClientConn
	client  *client.Client
	service string
	lookup  client.LookupOptions

	stop context.CancelFunc
	done chan struct{} // closed when watch returns

	mu        sync.Mutex
	now       bool   // ResolveNow asked for a lookup that does not block
	interrupt func() // cuts the current blocking query or backoff short
}

// ResolveNow makes the resolver look the service up at once, without
// waiting for a change.
func (r *sagaResolver) ResolveNow(resolver.ResolveNowOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = true
	r.interrupt()
}

// Close stops the watch and waits for it to end.
func (r *sagaResolver) Close() {
	r.stop()
	<-r.done
}

// watch looks the service up, hands the addresses to grpc whenever they
// change, and asks again with the index of the last answer, so that the
// server answers as soon as the service changes.
func (r *sagaResolver) watch(ctx context.Context) {
	defer close(r.done)
	var (
		blocking  bool // after an answer: wait for the next change
		index     uint64
		last      []resolver.Address
		pushed    bool
		failures  int
		lastForce time.Time
		wait      time.Duration // before the next lookup
	)
	for {
		step, cut := context.WithCancel(ctx)
		r.mu.Lock()
		force := r.now
		r.now, r.interrupt = false, cut
		r.mu.Unlock()
		if force {
			// A forced lookup answers at once: no index. Forced ones in a
			// burst wait for each other, and stand in for a backoff.
			blocking, wait = false, minResolveGap-time.Since(lastForce)
		}
		sleep(step, wait)
		if step.Err() != nil { // Close, or ResolveNow during the wait
			cut()
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if force {
			lastForce = time.Now()
		}
		opts := r.lookup
		if blocking {
			opts.Index, opts.Wait = index, watchWait
		}
		// A bound on the wait for an answer, in case the server went away
		// without a word (a partition): it answers within its wait.
		lookupCtx, cancelLookup := context.WithTimeout(step, watchWait+time.Minute)
		res, err := r.client.Lookup(lookupCtx, r.service, opts)
		cancelLookup()
		stepErr := step.Err()
		cut()
		switch {
		case ctx.Err() != nil:
			return
		case stepErr != nil:
			wait = 0 // cut short by ResolveNow: look up again at once
			continue
		case err != nil:
			failures++
			r.cc.ReportError(fmt.Errorf("saga resolver: look up %q: %w", r.service, err))
			blocking, wait = false, backoff(failures, err)
			continue
		}
		// The server's index as it is, even one that went back (another
		// server, or one restarted), or 0 (no such service yet): the next
		// query waits for it to change.
		failures, blocking, index, wait = 0, true, res.Index, 0
		addrs := addresses(res.Instances)
		if pushed && sameAddresses(addrs, last) {
			continue
		}
		// An error here is grpc's word on the list (an empty one is bad
		// for its balancers); there is nothing to retry: the blocking
		// query brings the next change.
		_ = r.cc.UpdateState(resolver.State{Addresses: addrs})
		last, pushed = addrs, true
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// backoff is the wait after the n-th failed lookup in a row: doubling from
// minBackoff up to maxBackoff, with jitter so that many clients do not ask
// together, and at least what the server asked for (Retry-After).
func backoff(n int, err error) time.Duration {
	d := maxBackoff
	if n < 20 {
		d = min(minBackoff<<(n-1), maxBackoff)
	}
	d = d/2 + rand.N(d/2+1)
	if apiErr, ok := errors.AsType[*client.Error](err); ok && apiErr.RetryAfter > d {
		d = apiErr.RetryAfter
	}
	return d
}

// addresses turns instances into grpc addresses with their attributes.
func addresses(instances []registry.Instance) []resolver.Address {
	addrs := make([]resolver.Address, 0, len(instances))
	for _, in := range instances {
		addrs = append(addrs, resolver.Address{
			Addr:       net.JoinHostPort(in.Address, strconv.Itoa(in.Port)),
			Attributes: attributesOf(in),
		})
	}
	return addrs
}

func sameAddresses(a, b []resolver.Address) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
