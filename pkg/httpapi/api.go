// Package httpapi is Saga's HTTP API (SPEC §2): every route is declared in
// routes.go, handlers return errors, and one function (writeError) turns an
// error into a status and a JSON error body. Writes go to the Store and the
// event each write returns is applied to the view at once; every read is
// answered by the view.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// Defaults for Options fields left zero.
const (
	DefaultTTL               = registry.DefaultTTL
	DefaultHeartbeatInterval = registry.DefaultHeartbeatInterval
	DefaultKeepAlive         = 15 * time.Second
	DefaultWait              = 5 * time.Minute
	MaxWait                  = 10 * time.Minute
	// MaxBodyBytes is the largest request body accepted (SPEC §2).
	MaxBodyBytes = 64 << 10
	// pingTimeout bounds the store check of the health report and readyz,
	// so a probe answers quickly even when the store hangs.
	pingTimeout = time.Second
)

// Writer is what the API asks of the store: the three writes, and whether
// it answers (readyz and the health report). Reads never reach it; the
// view answers them.
type Writer interface {
	Register(ctx context.Context, in registry.Instance) (registry.Event, error)
	Heartbeat(ctx context.Context, service, id string, status registry.Status, now time.Time) (registry.Event, error)
	Deregister(ctx context.Context, service, id string) (registry.Event, error)
	Ping(ctx context.Context) error
}

// Options configures the API. Store and View are required.
type Options struct {
	Store  Writer
	View   *view.View
	Clock  registry.Clock // nil: the system clock
	Logger *slog.Logger   // nil: discard

	DefaultTTL        time.Duration // for registrations without ttl_seconds; 0: 60s
	HeartbeatInterval time.Duration // advised to clients; 0: 30s
	// KeepAlive is how often an idle event stream gets a comment line;
	// 0: 15s.
	KeepAlive time.Duration

	Version string
	Storage string // "embedded" or "redis", as the health report names it
	// ServiceName is this Saga's name in the health report (the
	// configuration's service.name); "": DefaultServiceName.
	ServiceName string

	// Tokens holds the tokens that requests are checked against; nil:
	// tokens kept in memory only.
	Tokens *auth.Tokens
	// Auth is whether tokens are required, and protected mode; SetAuth
	// changes it while serving.
	Auth AuthSettings
	// Audit receives one line per write and token change; nil: Logger.
	Audit *slog.Logger
	// Limits bound what clients may hold (SPEC §6); the zero Limits is
	// unlimited. SetLimits changes them while serving.
	Limits Limits
	// CheckPolicy is what registrations' checks may aim at
	// (checks.allow_other_targets).
	CheckPolicy registry.CheckPolicy

	// Registerer receives the API's metrics; nil: a registry of the API's own,
	// which also collects Go and process metrics. GET /metrics serves
	// Registerer when it is also a prometheus.Gatherer, else the default
	// gatherer.
	Registerer prometheus.Registerer

	// Console is the web console, served at /ui/; nil: no console.
	Console http.Handler
}

// API is Saga's HTTP handler.
type API struct {
	store             Writer
	view              *view.View
	clock             registry.Clock
	logger            *slog.Logger
	defaultTTL        time.Duration
	checkPolicy       registry.CheckPolicy
	heartbeatInterval time.Duration
	keepAlive         time.Duration
	version           string
	storage           string
	serviceName       string
	started           time.Time
	ready             atomic.Bool
	metrics           *metrics
	denials           *prometheus.CounterVec
	tokens            *auth.Tokens
	authSettings      atomic.Pointer[AuthSettings]
	settingsMu        sync.Mutex
	settingsChanged   chan struct{} // closed at the next SetAuth
	audit             atomic.Pointer[slog.Logger]
	limits            atomic.Pointer[Limits]
	clients           *clientTable
	router            chi.Router
	console           http.Handler
	// draining ends the long-lived requests once the server drains.
	draining    context.Context
	endLongLive context.CancelFunc
}

// New builds the API over opts.Store and opts.View. The API reports ready
// from the start; the daemon calls SetReady(false) when it begins to drain.
func New(opts Options) *API {
	if opts.Clock == nil {
		opts.Clock = registry.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = DefaultTTL
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.ServiceName == "" {
		opts.ServiceName = DefaultServiceName
	}
	if opts.Tokens == nil {
		opts.Tokens = auth.NewTokens(auth.NewMemoryStore(), opts.Clock, opts.Logger)
	}
	if opts.Audit == nil {
		opts.Audit = opts.Logger
	}
	gatherer := prometheus.DefaultGatherer
	if opts.Registerer == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts.Registerer = reg
	}
	if g, ok := opts.Registerer.(prometheus.Gatherer); ok {
		gatherer = g
	}

	a := &API{
		view:              opts.View,
		clock:             opts.Clock,
		logger:            opts.Logger.With("component", "httpapi"),
		defaultTTL:        opts.DefaultTTL,
		checkPolicy:       opts.CheckPolicy,
		heartbeatInterval: opts.HeartbeatInterval,
		keepAlive:         opts.KeepAlive,
		version:           opts.Version,
		storage:           opts.Storage,
		serviceName:       opts.ServiceName,
		started:           opts.Clock.Now(),
		console:           opts.Console,
	}
	a.clients = newClientTable()
	a.SetLimits(opts.Limits)
	a.metrics = newMetrics(opts.Registerer, gatherer, opts.View, a.clients)
	a.denials = newDenialCounter(opts.Registerer)
	a.tokens = opts.Tokens
	a.SetAudit(opts.Audit)
	a.SetAuth(opts.Auth)
	a.store = opts.Store
	a.draining, a.endLongLive = context.WithCancel(context.Background())
	a.ready.Store(true)
	a.router = a.routes()
	return a
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// SetAudit sends the audit lines to logger from now on.
func (a *API) SetAudit(logger *slog.Logger) { a.audit.Store(logger.With("component", "audit")) }

// SetReady sets what /readyz reports (besides the store answering).
func (a *API) SetReady(ready bool) { a.ready.Store(ready) }
