package server

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/registry"
)

// meteredStore counts and times every call to a store, whoever makes it:
// the API, the view's follower and guard, the reaper, the start-up grace.
type meteredStore struct {
	registry.Store
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var _ registry.Store = (*meteredStore)(nil)

// newMeteredStore wraps store and registers its series with reg.
func newMeteredStore(store registry.Store, reg prometheus.Registerer) *meteredStore {
	s := &meteredStore{
		Store: store,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_store_operations_total", Help: "Store round trips by operation.",
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_store_errors_total", Help: "Store operations that failed (not counting not-found answers).",
		}, []string{"operation"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "saga_store_operation_duration_seconds", Help: "Store round-trip latency by operation.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"operation"}),
	}
	reg.MustRegister(s.calls, s.errors, s.duration)
	return s
}

func (s *meteredStore) observe(op string, began time.Time, err error) {
	s.calls.WithLabelValues(op).Inc()
	s.duration.WithLabelValues(op).Observe(time.Since(began).Seconds())
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.errors.WithLabelValues(op).Inc()
	}
}

func (s *meteredStore) Register(ctx context.Context, in registry.Instance) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Register(ctx, in)
	s.observe("register", began, err)
	return ev, err
}

func (s *meteredStore) Heartbeat(ctx context.Context, service, id string, status registry.Status, now time.Time) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Heartbeat(ctx, service, id, status, now)
	s.observe("heartbeat", began, err)
	return ev, err
}

func (s *meteredStore) Deregister(ctx context.Context, service, id string) (registry.Event, error) {
	began := time.Now()
	ev, err := s.Store.Deregister(ctx, service, id)
	s.observe("deregister", began, err)
	return ev, err
}

func (s *meteredStore) ExpireDue(ctx context.Context, now time.Time) ([]registry.Event, error) {
	began := time.Now()
	events, err := s.Store.ExpireDue(ctx, now)
	s.observe("expire_due", began, err)
	return events, err
}

func (s *meteredStore) GrantGrace(ctx context.Context, now time.Time) error {
	began := time.Now()
	err := s.Store.GrantGrace(ctx, now)
	s.observe("grant_grace", began, err)
	return err
}

func (s *meteredStore) Snapshot(ctx context.Context) (registry.Snapshot, error) {
	began := time.Now()
	snap, err := s.Store.Snapshot(ctx)
	s.observe("snapshot", began, err)
	return snap, err
}

func (s *meteredStore) Ping(ctx context.Context) error {
	began := time.Now()
	err := s.Store.Ping(ctx)
	s.observe("ping", began, err)
	return err
}
