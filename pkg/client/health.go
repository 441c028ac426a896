package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// HealthReport is the server's own health (GET /api/v1/health).
type HealthReport struct {
	Status        string     `json:"status"` // "healthy" or "degraded"
	Service       string     `json:"service"`
	Version       string     `json:"version"`
	Storage       string     `json:"storage"`
	Redis         string     `json:"redis,omitempty"` // only with the redis store
	Cache         CacheStats `json:"cache"`
	UptimeSeconds float64    `json:"uptime_seconds"`
}

// CacheStats describes the server's in-memory view.
type CacheStats struct {
	Size        int       `json:"size"`      // services with a live instance
	Instances   int       `json:"instances"` // their live instances
	Hits        uint64    `json:"hits"`
	Misses      uint64    `json:"misses"`
	HitRatio    float64   `json:"hit_ratio"`
	LastRefresh time.Time `json:"last_refresh"`
}

// Healthy reports whether the server said it is healthy.
func (h HealthReport) Healthy() bool { return h.Status == "healthy" }

// Health returns the server's health report. A degraded server (503 with a
// report) is not an error: check Healthy.
func (c *Client) Health(ctx context.Context) (HealthReport, error) {
	var report HealthReport
	if err := c.getReport(ctx, "/api/v1/health", &report); err != nil {
		return HealthReport{}, err
	}
	if report.Status == "" {
		return HealthReport{}, fmt.Errorf("health report has no status")
	}
	return report, nil
}

// ServiceHealth is a service's health for load balancers
// (GET /api/v1/services/{service}/health).
type ServiceHealth struct {
	Service   string `json:"service"`
	Instances int    `json:"instances"` // live instances of any status
	Passing   int    `json:"passing"`
	Warning   int    `json:"warning"`
	Critical  int    `json:"critical"`
	// Healthy is true when the server answered 200: at least one instance passes.
	Healthy bool `json:"healthy"`
}

// ServiceHealth returns the instance counts of service by status. A
// service without passing instances (503) is not an error: check Healthy.
func (c *Client) ServiceHealth(ctx context.Context, service string) (ServiceHealth, error) {
	var h ServiceHealth
	r, err := c.roundTrip(ctx, http.MethodGet, servicePath(service)+"/health", nil, nil)
	if err != nil {
		return ServiceHealth{}, err
	}
	if err := decodeReport(r, &h); err != nil {
		return ServiceHealth{}, err
	}
	h.Healthy = r.status == http.StatusOK
	if h.Service == "" {
		h.Service = service
	}
	return h, nil
}

func (c *Client) getReport(ctx context.Context, path string, out any) error {
	r, err := c.roundTrip(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	return decodeReport(r, out)
}

// decodeReport decodes the body of a health answer, which comes as 200 or
// 503 alike; a 503 that carries an API error instead becomes that *Error.
func decodeReport(r reply, out any) error {
	if (r.status != http.StatusOK && r.status != http.StatusServiceUnavailable) || isAPIError(r.body) {
		return decodeError(r.status, r.header, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		if r.status != http.StatusOK {
			return decodeError(r.status, r.header, r.body)
		}
		return fmt.Errorf("decode health report: %w", err)
	}
	return nil
}

// isAPIError reports whether body is {"error":{…}}.
func isAPIError(body []byte) bool {
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal(body, &probe) == nil && len(probe.Error) > 0 && probe.Error[0] == '{'
}
