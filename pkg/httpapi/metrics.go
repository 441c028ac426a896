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

	"github.com/sagaproject/saga/pkg/view"
)

// metrics are the API's Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	// rateLimited counts refusals by the limits, by kind: read, write,
	// blocking, stream, instances.
	rateLimited *prometheus.CounterVec
	handler     http.Handler
}

func newMetrics(reg prometheus.Registerer, gatherer prometheus.Gatherer, v *view.View, clients *clientTable) *metrics {
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
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_http_rate_limited_total", Help: "Requests refused by a limit (limits.*), by kind: read, write, blocking, stream, instances.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.duration, m.errors, m.rateLimited,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "saga_http_blocking_queries_open", Help: "Blocking queries waiting for a change.",
		}, func() float64 { blocking, _ := clients.open(); return float64(blocking) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "saga_http_event_streams_open", Help: "Event streams open.",
		}, func() float64 { _, streams := clients.open(); return float64(streams) }),
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
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), recorderKey{}, rec)))
	})
}

// recorderKey finds the request's statusRecorder in its context, for
// writeError and the audit line, whatever writers wrap it.
type recorderKey struct{}

func recorderOf(r *http.Request) *statusRecorder {
	rec, _ := r.Context().Value(recorderKey{}).(*statusRecorder)
	return rec
}
