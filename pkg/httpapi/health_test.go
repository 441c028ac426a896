package httpapi_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/server"
)

// healthBody is the health report as a client reads it.
type healthBody struct {
	Status  string `json:"status"`
	Service string `json:"service"`
	Version string `json:"version"`
	Storage string `json:"storage"`
	Cache   struct {
		Size        int       `json:"size"`
		Instances   int       `json:"instances"`
		Hits        uint64    `json:"hits"`
		Misses      uint64    `json:"misses"`
		HitRatio    float64   `json:"hit_ratio"`
		LastRefresh time.Time `json:"last_refresh"`
	} `json:"cache"`
	UptimeSeconds int64 `json:"uptime_seconds"`
}

func (h *harness) health(t *testing.T) healthBody {
	t.Helper()
	rec := h.do(t, http.MethodGet, "/api/v1/health", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("health: %d %s", rec.Code, rec.Body)
	}
	var report healthBody
	decode(t, rec, &report)
	return report
}

func TestHealthReport(t *testing.T) {
	h := newHarness(t)
	seed(t, h) // web: a, b (warning), c (critical); db: d
	h.do(t, http.MethodGet, "/api/v1/services/web", "")
	h.do(t, http.MethodGet, "/api/v1/services/web", "")

	rec := h.do(t, http.MethodGet, "/api/v1/health", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var got map[string]json.RawMessage
	decode(t, rec, &got)
	keys := slices.Sorted(maps.Keys(got))
	if want := []string{"cache", "service", "status", "storage", "uptime_seconds", "version"}; !slices.Equal(keys, want) {
		t.Fatalf("fields %v, want %v (no redis field with the embedded store)", keys, want)
	}
	var cache map[string]json.RawMessage
	if err := json.Unmarshal(got["cache"], &cache); err != nil {
		t.Fatal(err)
	}
	if keys, want := slices.Sorted(maps.Keys(cache)), []string{"hit_ratio", "hits", "instances", "last_refresh", "misses", "size"}; !slices.Equal(keys, want) {
		t.Fatalf("cache fields %v, want %v", keys, want)
	}

	report := h.health(t)
	if report.Status != "healthy" || report.Service != "saga" || report.Version != "1.2.3" || report.Storage != "embedded" {
		t.Fatalf("report %+v", report)
	}
	c := report.Cache
	// size counts services, as earlier releases documented it; the
	// instances have a field of their own.
	if c.Size != 2 || c.Instances != 4 || c.Hits != 1 || c.Misses != 1 || c.HitRatio != 0.5 || !c.LastRefresh.Equal(epoch) {
		t.Fatalf("cache %+v; want 2 services, 4 instances, 1 hit, 1 miss", c)
	}

	// Past their deadlines the instances no longer count, reaped or not,
	// as no lookup returns them.
	h.clock.Advance(90 * time.Second)
	report = h.health(t)
	if c := report.Cache; c.Size != 0 || c.Instances != 0 {
		t.Fatalf("after every TTL ran out: cache %+v; want 0 services, 0 instances", c)
	}
	if report.UptimeSeconds != 90 {
		t.Fatalf("uptime %d, want 90", report.UptimeSeconds)
	}
}

func TestHealthReportCountsServicesThatHaveInstances(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	for _, call := range []string{"/api/v1/services/db/instances/d", "/api/v1/services/web/instances/c"} {
		if rec := h.do(t, http.MethodDelete, call, ""); rec.Code != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d %s", call, rec.Code, rec.Body)
		}
	}
	// db keeps its index, but with no instance left it is no service the
	// catalogue lists, and the report agrees with the catalogue.
	if c := h.health(t).Cache; c.Size != 1 || c.Instances != 2 {
		t.Fatalf("cache %+v; want 1 service (web), 2 instances", c)
	}
	var catalogue struct {
		Services []struct {
			Name      string `json:"name"`
			Instances int    `json:"instances"`
		} `json:"services"`
	}
	decode(t, h.do(t, http.MethodGet, "/api/v1/services", ""), &catalogue)
	if len(catalogue.Services) != 1 || catalogue.Services[0].Instances != 2 {
		t.Fatalf("catalogue %+v; want web with 2 instances", catalogue)
	}
}

func TestHealthReportNamesTheConfiguredService(t *testing.T) {
	h := newHarness(t, func(o *server.Options) { o.ServiceName = "registry-eu" })
	if got := h.health(t).Service; got != "registry-eu" {
		t.Fatalf("service %q, want the configured registry-eu", got)
	}
	h = newHarness(t, func(o *server.Options) { o.ServiceName = "" })
	if got := h.health(t).Service; got != httpapi.DefaultServiceName {
		t.Fatalf("service %q, want saga when none is configured", got)
	}
}

func TestHealthReportNamesRedisOnlyWithRedis(t *testing.T) {
	h := newHarness(t, func(o *server.Options) { o.Storage = "redis" })
	rec := h.do(t, http.MethodGet, "/api/v1/health", "")
	if !strings.Contains(rec.Body.String(), `"redis":"connected"`) {
		t.Fatalf("body %s", rec.Body)
	}
	_ = h.store.Close()
	rec = h.do(t, http.MethodGet, "/api/v1/health", "")
	if rec.Code != http.StatusServiceUnavailable ||
		!strings.Contains(rec.Body.String(), `"redis":"disconnected"`) ||
		!strings.Contains(rec.Body.String(), `"status":"degraded"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestProbes(t *testing.T) {
	h := newHarness(t)
	if rec := h.do(t, http.MethodGet, "/livez", ""); rec.Code != http.StatusOK {
		t.Fatalf("livez %d", rec.Code)
	}
	if rec := h.do(t, http.MethodGet, "/readyz", ""); rec.Code != http.StatusOK {
		t.Fatalf("readyz %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(t, http.MethodHead, "/readyz", ""); rec.Code != http.StatusOK {
		t.Fatalf("HEAD readyz %d", rec.Code)
	}

	h.api.SetReady(false) // draining
	wantError(t, h.do(t, http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, "unavailable", "")
	h.api.SetReady(true)

	_ = h.store.Close() // the store stops answering
	wantError(t, h.do(t, http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, "unavailable", "")
	if rec := h.do(t, http.MethodGet, "/livez", ""); rec.Code != http.StatusOK {
		t.Fatalf("livez while the store is gone: %d", rec.Code)
	}
	rec := h.do(t, http.MethodGet, "/api/v1/health", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"status":"degraded"`) {
		t.Fatalf("health while the store is gone: %d %s", rec.Code, rec.Body)
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	h.do(t, http.MethodGet, "/api/v1/services/web", "")
	h.do(t, http.MethodGet, "/api/v1/services/web", "")
	h.do(t, http.MethodGet, "/api/v1/services/web/instances/nope", "")
	h.do(t, http.MethodPost, "/api/v1/services/web/instances", `{"port":"x"}`)

	rec := h.do(t, http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`saga_http_requests_total{method="POST",route="/api/v1/services/{service}/instances",status="201"} 4`,
		`saga_http_requests_total{method="GET",route="/api/v1/services/{service}",status="200"} 2`,
		`saga_http_request_errors_total{code="not_found",route="/api/v1/services/{service}/instances/{id}"} 1`,
		`saga_http_request_errors_total{code="invalid_argument",route="/api/v1/services/{service}/instances"} 1`,
		`saga_http_request_duration_seconds_count{method="GET",route="/api/v1/services/{service}"} 2`,
		`saga_store_operations_total{operation="register"} 4`,
		`saga_store_operations_total{operation="heartbeat"} 2`,
		`saga_registered_instances 4`,
		`saga_cache_hits_total 1`,
		`saga_cache_misses_total 1`,
		`saga_expirations_total 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
