package httpapi

import (
	"context"
	"net/http"
	"time"
)

// DefaultServiceName is the health report's "service" when
// Options.ServiceName is empty, as the configuration's service.name
// defaults.
const DefaultServiceName = "saga"

// healthReport is GET /api/v1/health, with the fields earlier Saga releases
// reported.
type healthReport struct {
	Status        string      `json:"status"`  // healthy or degraded
	Service       string      `json:"service"` // service.name
	Version       string      `json:"version"`
	Storage       string      `json:"storage"`
	Redis         string      `json:"redis,omitempty"` // only with the redis backend
	Cache         cacheReport `json:"cache"`
	UptimeSeconds int64       `json:"uptime_seconds"`
}

// cacheReport describes the in-memory view. Size and Instances count what
// the catalogue (GET /api/v1/services) lists: size counts services, as
// earlier releases documented it, and instances their live instances.
type cacheReport struct {
	Size        int        `json:"size"`
	Instances   int        `json:"instances"`
	Hits        uint64     `json:"hits"`
	Misses      uint64     `json:"misses"`
	HitRatio    float64    `json:"hit_ratio"`
	LastRefresh *time.Time `json:"last_refresh"` // null before the first load
}

// health handles GET /api/v1/health: 200 when the store answers, else 503
// with status degraded (reads are still served from memory).
func (a *API) health(w http.ResponseWriter, r *http.Request) error {
	storeErr := a.ping(r.Context())
	stats := a.view.Stats()
	services, _ := a.view.Catalog()
	instances := 0
	for _, s := range services {
		instances += s.Instances
	}
	report := healthReport{
		Status:  "healthy",
		Service: a.serviceName,
		Version: a.version,
		Storage: a.storage,
		Cache: cacheReport{
			Size:      len(services),
			Instances: instances,
			Hits:      stats.Hits,
			Misses:    stats.Misses,
		},
		UptimeSeconds: int64(a.clock.Now().Sub(a.started) / time.Second),
	}
	if total := stats.Hits + stats.Misses; total > 0 {
		report.Cache.HitRatio = float64(stats.Hits) / float64(total)
	}
	if !stats.LastRefresh.IsZero() {
		last := stats.LastRefresh.UTC()
		report.Cache.LastRefresh = &last
	}
	status := http.StatusOK
	if storeErr != nil {
		report.Status = "degraded"
		status = http.StatusServiceUnavailable
		a.logger.Debug("health: store does not answer", "err", storeErr)
	}
	if a.storage == "redis" {
		report.Redis = "connected"
		if storeErr != nil {
			report.Redis = "disconnected"
		}
	}
	writeJSON(w, status, report)
	return nil
}

// livez handles GET /livez: the process serves.
func (a *API) livez(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

var (
	errDraining     = &apiError{http.StatusServiceUnavailable, codeUnavailable, "not ready: shutting down"}
	errStoreSilent  = &apiError{http.StatusServiceUnavailable, codeUnavailable, "not ready: the store does not answer"}
	readyAnswerBody = map[string]string{"status": "ready"}
)

// readyz handles GET /readyz: ready unless draining, and the store answers.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if !a.ready.Load() {
		return errDraining
	}
	if err := a.ping(r.Context()); err != nil {
		a.logger.Debug("readyz: store does not answer", "err", err)
		return errStoreSilent
	}
	writeJSON(w, http.StatusOK, readyAnswerBody)
	return nil
}

// ping asks the store whether it answers, within pingTimeout.
func (a *API) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return a.store.Ping(ctx)
}
