package httpapi

import (
	"context"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// metrics are the API's Prometheus series.
type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	errors        *prometheus.CounterVec
	storeCalls    *prometheus.CounterVec
	storeErrors   *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	handler       http.Handler
}

func newMetrics(reg prometheus.Registerer, gatherer prometheus.Gatherer, v *view.View) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "saga_http_request_duration_seconds", Help: "HTTP request latency by route pattern and method (blocking queries and event streams included).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300},
		}, []string{"route", "method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_http_request_errors_total", Help: "HTTP error answers by route pattern and error code.",
		}, []string{"route", "code"}),
		storeCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_store_operations_total", Help: "Store round trips by operation.",
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_store_errors_total", Help: "Store operations that failed (not counting not-found answers).",
		}, []string{"operation"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "saga_store_operation_duration_seconds", Help: "Store round-trip latency by operation.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"operation"}),
	}
	reg.MustRegister(m.requests, m.duration, m.errors, m.storeCalls, m.storeErrors, m.storeDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "saga_registered_instances", Help: "Instances held in memory, including any not yet reaped.",
		}, func() float64 { return float64(v.Stats().Size) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "saga_expirations_total", Help: "Instances removed because their TTL ran out.",
		}, func() float64 { return float64(v.Stats().Expirations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "saga_cache_hits_total", Help: "Reads answered from cached JSON.",
		}, func() float64 { return float64(v.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "saga_cache_misses_total", Help: "Reads that had to encode their answer.",
		}, func() float64 { return float64(v.Stats().Misses) }),
	)
	m.handler = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
	return m
}

// statusRecorder notes what a handler answered, for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	errCode string // set by writeError
	wrote   bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var errPanic = errors.New("handler panicked")

// instrument counts and times every request by its route pattern, and turns
// a panicking handler into a logged 500 instead of a dropped connection.
func (a *API) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // a sentinel panic value, compared as net/http does
					panic(p)
				}
				a.logger.Error("handler panicked", "panic", p, "stack", string(debug.Stack()))
				if !rec.wrote {
					a.writeError(rec, r, errPanic)
				}
			}
			route := "unmatched"
			if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
				route = rctx.RoutePattern()
			}
			a.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
			a.metrics.duration.WithLabelValues(route, r.Method).Observe(time.Since(began).Seconds())
			if rec.errCode != "" {
				a.metrics.errors.WithLabelValues(route, rec.errCode).Inc()
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// instrumentedStore counts and times the calls to a Store.
type instrumentedStore struct {
	registry.Store
	metrics *metrics
}

var _ registry.Store = (*instrumentedStore)(nil)

func (s *instrumentedStore) observe(op string, began time.Time, err error) {
	s.metrics.storeCalls.WithLabelValues(op).Inc()
	s.metrics.storeDuration.WithLabelValues(op).Observe(time.Since(began).Seconds())
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.metrics.storeErrors.WithLabelValues(op).Inc()
	}
}

func (s *instrumentedStore) Register(ctx context.Context, in registry.Instance) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Register(ctx, in)
	s.observe("register", began, err)
	return ev, err
}

func (s *instrumentedStore) Heartbeat(ctx context.Context, service, id string, status registry.Status, now time.Time) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Heartbeat(ctx, service, id, status, now)
	s.observe("heartbeat", began, err)
	return ev, err
}

func (s *instrumentedStore) Deregister(ctx context.Context, service, id string) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Deregister(ctx, service, id)
	s.observe("deregister", began, err)
	return ev, err
}

func (s *instrumentedStore) ExpireDue(ctx context.Context, now time.Time) ([]registry.Event, error) {
	began := time.Now()
	events, err := s.Store.ExpireDue(ctx, now)
	s.observe("expire_due", began, err)
	return events, err
}

func (s *instrumentedStore) GrantGrace(ctx context.Context, now time.Time) error {
	began := time.Now()
	err := s.Store.GrantGrace(ctx, now)
	s.observe("grant_grace", began, err)
	return err
}

func (s *instrumentedStore) Snapshot(ctx context.Context) (registry.Snapshot, error) {
	began := time.Now()
	snap, err := s.Store.Snapshot(ctx)
	s.observe("snapshot", began, err)
	return snap, err
}

func (s *instrumentedStore) Ping(ctx context.Context) error {
	began := time.Now()
	err := s.Store.Ping(ctx)
	s.observe("ping", began, err)
	return err
}
