// Package httpapi is Saga's HTTP API (SPEC §2): every route is declared in
// routes.go, handlers return errors, and one function (writeError) turns an
// error into a status and a JSON error body. Writes go to the Store and the
// event each write returns is applied to the view at once; every read is
// answered by the view.
package httpapi

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// Defaults for Options fields left zero.
const (
	DefaultTTL               = 60 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultKeepAlive         = 15 * time.Second
	DefaultWait              = 5 * time.Minute
	MaxWait                  = 10 * time.Minute
	// MaxBodyBytes is the largest request body accepted (SPEC §2).
	MaxBodyBytes = 64 << 10
	// pingTimeout bounds the store check of the health report and readyz,
	// so a probe answers quickly even when the store hangs.
	pingTimeout = time.Second
)

// Options configures the API. Store and View are required.
type Options struct {
	Store  registry.Store
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

	// Registerer receives the API's metrics; nil: a registry of the API's own,
	// which also collects Go and process metrics. GET /metrics serves
	// Registerer when it is also a prometheus.Gatherer, else the default
	// gatherer.
	Registerer prometheus.Registerer
}

// API is Saga's HTTP handler.
type API struct {
	store             registry.Store // instrumented
	view              *view.View
	clock             registry.Clock
	logger            *slog.Logger
	defaultTTL        time.Duration
	heartbeatInterval time.Duration
	keepAlive         time.Duration
	version           string
	storage           string
	started           time.Time
	ready             atomic.Bool
	metrics           *metrics
	router            chi.Router
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
		heartbeatInterval: opts.HeartbeatInterval,
		keepAlive:         opts.KeepAlive,
		version:           opts.Version,
		storage:           opts.Storage,
		started:           opts.Clock.Now(),
	}
	a.metrics = newMetrics(opts.Registerer, gatherer, opts.View)
	a.store = &instrumentedStore{Store: opts.Store, metrics: a.metrics}
	a.ready.Store(true)
	a.router = a.routes()
	return a
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// SetReady sets what /readyz reports (besides the store answering).
func (a *API) SetReady(ready bool) { a.ready.Store(ready) }

// Store returns the store wrapped with the API's metrics; give it to the
// reaper so that its store calls are counted too.
func (a *API) Store() registry.Store { return a.store }
