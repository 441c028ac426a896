package httpapi

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one client, and all clients together, may hold of the
// API (SPEC §6); they mirror the configuration's limits.* keys. A rate or a
// cap of 0 is unlimited, a timeout of 0 is none. A client is its token's
// accessor, else its address (clientKey).
type Limits struct {
	ReadRate   float64 // requests per second, per client
	ReadBurst  int
	WriteRate  float64 // POST, PUT and DELETE per second, per client
	WriteBurst int

	MaxBlockingQueries          int // open at once, in total
	MaxBlockingQueriesPerClient int
	MaxStreams                  int // open event streams, in total
	MaxStreamsPerClient         int
	MaxInstances                int // instances held, in total

	BodyTimeout        time.Duration // to send a request body
	StreamWriteTimeout time.Duration // for each write to a client that does not read
}

// SetLimits changes the limits while serving (on SIGHUP). Clients keep
// their buckets, which take the new rate at their next request; streams
// and queries open beyond a lowered cap are left to end.
func (a *API) SetLimits(l Limits) { a.limits.Store(&l) }

// capRetryAfter is the Retry-After of a refusal by a cap: a slot frees when
// some stream or query ends, which nobody can tell in advance; a few
// seconds keep the retries from becoming a flood of their own.
const capRetryAfter = 5 * time.Second

// limitError refuses a request beyond a limit: 429 rate_limited when the
// client is over its share, 503 unavailable when the server as a whole is
// full. Both tell the client when to try again.
type limitError struct {
	*apiError
	retryAfter time.Duration
}

func (e *limitError) Unwrap() error { return e.apiError }

// retryAfterSeconds is d as Retry-After wants it: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func overClientLimit(retry time.Duration, format string, args ...any) *limitError {
	return &limitError{&apiError{http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf(format, args...)}, retry}
}

// limit applies the per-client rates, and gives each request its body and
// write deadlines. It runs after authentication, so that a client with a
// token is counted by its token rather than by an address it may share.
func (a *API) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := a.limits.Load()
		// Probes are exempt: a load balancer behind the same address as a
		// runaway client must not see Saga as dead and restart it.
		if r.URL.Path != "/livez" && r.URL.Path != "/readyz" {
			kind := "read"
			switch r.Method {
			case http.MethodPost, http.MethodPut, http.MethodDelete:
				kind = "write"
			}
			if err := a.clients.allow(clientKey(r), kind, l, a.clock.Now()); err != nil {
				a.metrics.rateLimited.WithLabelValues(kind).Inc()
				a.writeError(w, r, err)
				return
			}
		}
		rc := http.NewResponseController(w)
		a.extendWriteDeadline(rc)
		if l.BodyTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
			// Not http.Server.ReadTimeout: that would also end event
			// streams. The deadline is lifted once the body is in, so that
			// it cannot cancel the handler's work that follows.
			_ = rc.SetReadDeadline(time.Now().Add(l.BodyTimeout))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		next.ServeHTTP(w, r)
	})
}

// extendWriteDeadline gives the next write stream_write_timeout to reach
// the client: one that stops reading would otherwise hold its connection
// and goroutine for ever. Without a timeout any deadline is lifted.
func (a *API) extendWriteDeadline(rc *http.ResponseController) {
	var deadline time.Time
	if d := a.limits.Load().StreamWriteTimeout; d > 0 {
		deadline = time.Now().Add(d)
	}
	_ = rc.SetWriteDeadline(deadline) // writers without deadlines (test recorders) need none
}

// deadlineBody lifts the body's read deadline once the body has been read
// to its end. A body that failed keeps it: the server may still try to
// read what is left of it before answering.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// admitInstance refuses the registration of a new instance while the view
// holds limits.max_instances; re-registering a known one is always allowed.
func (a *API) admitInstance(service, id string) error {
	most := a.limits.Load().MaxInstances
	if most <= 0 {
		return nil
	}
	if _, ok := a.view.Instance(service, id); ok {
		return nil
	}
	if held := a.view.Stats().Size; held >= most {
		a.metrics.rateLimited.WithLabelValues("instances").Inc()
		return overClientLimit(capRetryAfter, "the registry holds %d instances, its limit (limits.max_instances); deregister some or raise the limit", held)
	}
	return nil
}

// admitLongLived takes a slot for a blocking query or an event stream of
// r's client, or refuses it; release gives the slot back.
func (a *API) admitLongLived(r *http.Request, stream bool) (release func(), err error) {
	kind := "blocking"
	if stream {
		kind = "stream"
	}
	release, err = a.clients.acquire(clientKey(r), stream, a.limits.Load(), a.clock.Now())
	if err != nil {
		a.metrics.rateLimited.WithLabelValues(kind).Inc()
	}
	return release, err
}

// clientSweepEvery is how often buckets of idle clients are looked for.
const clientSweepEvery = time.Minute

// clientTable holds each client's token buckets and open long-lived
// requests, and the totals of those.
type clientTable struct {
	mu        sync.Mutex
	clients   map[string]*clientState
	lastSweep time.Time
	blocking  int // blocking queries open, in total
	streams   int // event streams open, in total
}

type clientState struct {
	read, write *rate.Limiter // nil until the client's first request of the kind
	blocking    int
	streams     int
}

func newClientTable() *clientTable {
	return &clientTable{clients: make(map[string]*clientState)}
}

// open reports the long-lived requests open, for the gauges.
func (t *clientTable) open() (blocking, streams int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.blocking, t.streams
}

// allow takes a token from the client's bucket of kind ("read" or "write"),
// or says when there will be one.
func (t *clientTable) allow(key, kind string, l *Limits, now time.Time) error {
	perSecond, burst, name := l.ReadRate, l.ReadBurst, "reads"
	if kind == "write" {
		perSecond, burst, name = l.WriteRate, l.WriteBurst, "writes"
	}
	if perSecond <= 0 {
		return nil
	}
	burst = max(burst, 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clientLocked(key, now)
	bucket := &c.read
	if kind == "write" {
		bucket = &c.write
	}
	lim := *bucket
	switch {
	case lim == nil:
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		*bucket = lim
	case lim.Limit() != rate.Limit(perSecond) || lim.Burst() != burst: // reloaded
		lim.SetLimitAt(now, rate.Limit(perSecond))
		lim.SetBurstAt(now, burst)
	}
	if lim.AllowN(now, 1) {
		return nil
	}
	wait := time.Duration((1 - lim.TokensAt(now)) / perSecond * float64(time.Second))
	return overClientLimit(wait, "this client is over its rate of %g %s a second with bursts of %d (limits.%s_rate, limits.%s_burst); retry after %ds",
		perSecond, name, burst, kind, kind, retryAfterSeconds(wait))
}

// acquire takes a slot for a blocking query or (stream) an event stream, or
// refuses: 429 when the client is at its own cap, 503 when the server is at
// the total.
func (t *clientTable) acquire(key string, stream bool, l *Limits, now time.Time) (release func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clientLocked(key, now)
	mine, all := &c.blocking, &t.blocking
	perClient, total := l.MaxBlockingQueriesPerClient, l.MaxBlockingQueries
	what, keyName := "blocking queries", "limits.max_blocking_queries"
	if stream {
		mine, all = &c.streams, &t.streams
		perClient, total = l.MaxStreamsPerClient, l.MaxStreams
		what, keyName = "event streams", "limits.max_streams"
	}
	if perClient > 0 && *mine >= perClient {
		return nil, overClientLimit(capRetryAfter, "this client has %d %s open (%s_per_client); close one first", *mine, what, keyName)
	}
	if total > 0 && *all >= total {
		return nil, &limitError{&apiError{http.StatusServiceUnavailable, codeUnavailable,
			fmt.Sprintf("the server has %d %s open, its limit (%s); try again later", *all, what, keyName)}, capRetryAfter}
	}
	*mine++
	*all++
	// A client with a slot open is never swept, so c stays the table's.
	return func() {
		t.mu.Lock()
		*mine--
		*all--
		t.mu.Unlock()
	}, nil
}

// clientLocked returns key's state, first dropping the clients that have
// been idle long enough to lose nothing by it, so the table holds only
// recent clients however many addresses or tokens come and go.
func (t *clientTable) clientLocked(key string, now time.Time) *clientState {
	if now.Sub(t.lastSweep) >= clientSweepEvery {
		t.lastSweep = now
		for k, c := range t.clients {
			if c.idle(now) {
				delete(t.clients, k)
			}
		}
	}
	c := t.clients[key]
	if c == nil {
		c = &clientState{}
		t.clients[key] = c
	}
	return c
}

// idle: nothing open and both buckets full again, so a fresh state would
// behave the same.
func (c *clientState) idle(now time.Time) bool {
	full := func(lim *rate.Limiter) bool { return lim == nil || lim.TokensAt(now) >= float64(lim.Burst()) }
	return c.blocking == 0 && c.streams == 0 && full(c.read) && full(c.write)
}
