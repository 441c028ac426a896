package checks

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/registry"
)

// metrics are the checker's Prometheus series.
type metrics struct {
	run, failed *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, c *Checker) *metrics {
	m := &metrics{
		run: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_checks_run_total", Help: "Probes of active health checks run by this Saga, by type (http, tcp).",
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_checks_failed_total", Help: "Probes that found a target critical, by type.",
		}, []string{"type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "saga_check_probe_duration_seconds", Help: "How long probes took, by type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.run, m.failed, m.latency,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "saga_checks_instances", Help: "Instances whose checks this Saga runs.",
			}, func() float64 { return float64(c.Owned()) }))
	}
	return m
}

func (m *metrics) observe(kind string, res result) {
	m.run.WithLabelValues(kind).Inc()
	if res.status == registry.StatusCritical {
		m.failed.WithLabelValues(kind).Inc()
	}
	m.latency.WithLabelValues(kind).Observe(res.elapsed.Seconds())
}
