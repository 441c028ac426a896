// Package server assembles one Saga server, the same way for the daemon,
// the client test server and the API tests (as etcd's embed does):
//
//	store → metrics decorator → view (start-up grace, first snapshot)
//	      → HTTP API → background work (follower, guard, reaper, checks) → HTTP server
//
// and takes it down in a fixed order (Shutdown).
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/checks"
	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

const (
	// DefaultRefresh is how often the view is reloaded from a snapshot,
	// the fallback should the change feed ever miss an event unnoticed.
	DefaultRefresh = 30 * time.Second
	// DefaultHeaderTimeout bounds how long a client may take to send its
	// request headers, when Options set none.
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout bounds how long a keep-alive connection may stay
	// idle, when Options set none.
	DefaultIdleTimeout = 90 * time.Second
)

// Options is what a server is built from. Store is required.
type Options struct {
	// Store is the opened store; the server closes it on Shutdown.
	Store registry.Store
	// Storage names the store in the health report: "embedded" or "redis".
	Storage string
	Clock   registry.Clock // nil: the system clock
	Logger  *slog.Logger   // nil: discard

	DefaultTTL        time.Duration // 0: httpapi.DefaultTTL
	HeartbeatInterval time.Duration // 0: httpapi.DefaultHeartbeatInterval
	KeepAlive         time.Duration // 0: httpapi.DefaultKeepAlive
	Version           string
	ServiceName       string // the health report's "service"; "": httpapi.DefaultServiceName
	// Refresh is how often the view reloads a snapshot; 0: DefaultRefresh.
	Refresh time.Duration
	// Registerer receives every metric; nil: a registry of the server's
	// own, with Go and process metrics, served at /metrics.
	Registerer prometheus.Registerer

	// Tokens keeps the tokens; nil: Store, when it keeps tokens (both of
	// Saga's stores do), else memory only.
	Tokens auth.Store
	// Auth is whether tokens are required, and protected mode.
	Auth httpapi.AuthSettings
	// Audit receives the audit lines; nil: Logger.
	Audit *slog.Logger

	// Limits bound what clients may hold of the API; the zero value is
	// unlimited.
	Limits httpapi.Limits
	// MaxConnections is the budget of open connections (conns.go); 0:
	// derived from the descriptor limit; negative: none.
	MaxConnections int
	HeaderTimeout  time.Duration // 0: DefaultHeaderTimeout
	IdleTimeout    time.Duration // 0: DefaultIdleTimeout

	// Console is the web console, served at /ui/ on the API's listener;
	// nil: none.
	Console http.Handler

	// CheckPolicy is what checks may aim at (checks.allow_other_targets).
	CheckPolicy registry.CheckPolicy
	// CheckMaxConcurrent bounds the probes in flight; 0: the default.
	CheckMaxConcurrent int
	// Members is the set of Sagas that share the store's checks; nil:
	// this server alone (the embedded store).
	Members checks.Membership
}

// Server is one assembled Saga server.
type Server struct {
	opts   Options
	store  registry.Store // with metrics
	view   *view.View
	api    *httpapi.API
	tokens *auth.Tokens
	checks *checks.Checker
	http   *http.Server
	logger *slog.Logger

	stopWork context.CancelFunc
	work     sync.WaitGroup
	serving  atomic.Bool
}

// New assembles a server: it wraps the store with metrics, grants the
// start-up grace (instances could not heartbeat while Saga was down) and
// loads the view, then builds the API. A store that does not answer yet
// is not an error: the server starts degraded, and the guard loads the
// view once the store answers. Nothing runs in the background until Start.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = registry.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Registerer == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts.Registerer = reg
	}
	s := &Server{opts: opts, logger: opts.Logger, view: view.New(opts.Clock)}
	s.store = newMeteredStore(opts.Store, opts.Registerer)

	if err := s.store.GrantGrace(ctx, opts.Clock.Now()); err != nil {
		if !errors.Is(err, registry.ErrUnavailable) {
			return nil, fmt.Errorf("grant start-up grace: %w", err)
		}
		s.logger.Warn("store unreachable at start-up; serving degraded until it answers", "err", err)
		s.view.Freeze(opts.Clock.Now())
	} else {
		snap, err := s.store.Snapshot(ctx)
		if err != nil {
			return nil, fmt.Errorf("load registry: %w", err)
		}
		s.view.Load(snap)
	}

	s.tokens = auth.NewTokens(tokenStore(opts), opts.Clock, opts.Logger)
	if err := s.tokens.Load(ctx); err != nil {
		// Like the view, the tokens load once the store answers (Start).
		s.logger.Warn("tokens could not be read at start-up; retrying", "err", err)
	}
	opts.Registerer.MustRegister(buildInfo(opts.Version))

	s.api = httpapi.New(httpapi.Options{
		Tokens:            s.tokens,
		Auth:              opts.Auth,
		Audit:             opts.Audit,
		Store:             s.store,
		View:              s.view,
		Clock:             opts.Clock,
		Logger:            opts.Logger,
		DefaultTTL:        opts.DefaultTTL,
		HeartbeatInterval: opts.HeartbeatInterval,
		KeepAlive:         opts.KeepAlive,
		Version:           opts.Version,
		Storage:           opts.Storage,
		ServiceName:       opts.ServiceName,
		Registerer:        opts.Registerer,
		Limits:            opts.Limits,
		Console:           opts.Console,
		CheckPolicy:       opts.CheckPolicy,
	})
	s.checks = checks.New(checks.Options{
		Store:         s.store,
		View:          s.view,
		Apply:         s.view.Apply,
		Members:       opts.Members,
		Policy:        opts.CheckPolicy,
		MaxConcurrent: opts.CheckMaxConcurrent,
		Clock:         opts.Clock,
		Logger:        opts.Logger,
		Registerer:    opts.Registerer,
	})
	s.http = &http.Server{
		IdleTimeout:       cmp.Or(opts.IdleTimeout, DefaultIdleTimeout),
		Handler:           s.api,
		ReadHeaderTimeout: cmp.Or(opts.HeaderTimeout, DefaultHeaderTimeout),
		ErrorLog:          slog.NewLogLogger(opts.Logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	if budget := connBudgetFor(opts.MaxConnections); budget > 0 {
		s.http.ConnState = newConnBudget(budget, opts.Logger.With("component", "http")).track
	}
	return s, nil
}

// Start runs the background work until Shutdown: the follower that keeps
// the view current from the store's change feed, the guard that freezes
// expiry while the store is away, the reaper and the checker. It outlives the
// requests: it keeps the view current while they drain.
func (s *Server) Start() {
	ctx, stop := context.WithCancel(context.Background())
	s.stopWork = stop
	s.work.Go(func() { view.Follow(ctx, s.store, s.view, s.opts.Refresh, s.logger.With("component", "follower")) })
	s.work.Go(func() {
		view.Guard(ctx, s.store, s.view, s.opts.Clock, view.GuardInterval, s.logger.With("component", "guard"))
	})
	reaper := registry.NewReaper(s.store, s.opts.Clock, s.view.Apply, s.logger)
	s.work.Go(func() { reaper.Run(ctx) })
	s.work.Go(func() { s.tokens.Run(ctx, s.opts.Refresh) })
	s.work.Go(func() { s.checks.Run(ctx) })
}

// tokenStore is where the server's tokens are kept (Options.Tokens).
func tokenStore(opts Options) auth.Store {
	if opts.Tokens != nil {
		return opts.Tokens
	}
	if ts, ok := opts.Store.(auth.Store); ok {
		return ts
	}
	return auth.NewMemoryStore()
}

// buildInfo is saga_build_info: always 1, labelled with what was built.
func buildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "saga_build_info",
		Help:        "Always 1; its labels say which build of Saga runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// Serve serves the API on ln until Shutdown; it returns http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.serving.Store(true)
	return s.http.Serve(ln)
}

// Handler is the API, for a server that serves it itself (httptest).
func (s *Server) Handler() http.Handler { return s.api }

// API is the server's HTTP API.
func (s *Server) API() *httpapi.API { return s.api }

// View is the server's in-memory view of the registry.
func (s *Server) View() *view.View { return s.view }

// Store is the server's store, with metrics.
func (s *Server) Store() registry.Store { return s.store }

// Registerer is where the server's metrics go, for the parts the daemon
// adds beside it (the DNS server).
func (s *Server) Registerer() prometheus.Registerer { return s.opts.Registerer }

// Shutdown takes the server down in order:
//
//  1. report not ready, so load balancers stop sending;
//  2. end blocking queries and event streams, which never finish by
//     themselves (their clients are told to ask again);
//  3. stop accepting and let requests in flight finish until ctx ends,
//     then close the connections left;
//  4. stop the background work, which kept the view current meanwhile,
//     and the checks (the others take them over at once);
//  5. close the store, flushing what it holds.
//
// It returns the store's close error; running out of ctx in step 3 is
// logged, not returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.api.SetReady(false) // 1
	s.api.EndLongLived()  // 2
	if s.serving.Load() {
		if err := s.http.Shutdown(ctx); err != nil { // 3
			s.logger.Warn("requests still in flight after the drain timeout; closing their connections", "err", err)
			_ = s.http.Close() // the drain error above is the one worth reporting
		}
	}
	if s.stopWork != nil { // 4
		s.stopWork()
		s.work.Wait()
	}
	if err := s.opts.Store.Close(); err != nil { // 5
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
