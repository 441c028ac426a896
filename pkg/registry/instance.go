package registry

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"time"
)

// Defaults of every layer that needs them (the configuration, the API):
// the TTL of a registration that names none, and the heartbeat interval
// advised to clients.
const (
	DefaultTTL               = 60 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
)

// Status is the health an instance reports about itself with its heartbeats.
type Status string

// The statuses an instance can report.
const (
	StatusPassing  Status = "passing"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// Instance is one registered endpoint of a service.
type Instance struct {
	Service       string            `json:"service"`
	ID            string            `json:"id"`
	Address       string            `json:"address"`
	Port          int               `json:"port"`
	Tags          []string          `json:"tags"`
	Metadata      map[string]string `json:"metadata"`
	TTLSeconds    int               `json:"ttl_seconds"`
	Status        Status            `json:"status"`
	RegisteredAt  time.Time         `json:"registered_at"`
	LastHeartbeat time.Time         `json:"last_heartbeat"`
	ExpiresAt     time.Time         `json:"expires_at"`
	// Checks are the active health checks Saga runs (SPEC §7); an
	// instance with checks needs no heartbeats.
	Checks []Check `json:"checks,omitempty"`
}

// TTL is the instance's time-to-live as a duration.
func (in Instance) TTL() time.Duration { return time.Duration(in.TTLSeconds) * time.Second }

// Live reports whether the instance has not yet expired at now. An instance
// is dead from the very instant of its deadline on.
func (in Instance) Live(now time.Time) bool { return now.Before(in.ExpiresAt) }

// Clone returns a deep copy, so that callers can hand instances out without
// sharing their tag slice or metadata map.
func (in Instance) Clone() Instance {
	out := in
	out.Tags = slices.Clone(in.Tags)
	if out.Tags == nil {
		out.Tags = []string{}
	}
	out.Metadata = maps.Clone(in.Metadata)
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	if in.Checks != nil {
		out.Checks = make([]Check, len(in.Checks))
		for i, c := range in.Checks {
			out.Checks[i] = c
			out.Checks[i].Headers = maps.Clone(c.Headers)
		}
	}
	return out
}

// Renewed returns the instance after a heartbeat at now: the deadline moves
// one TTL ahead of now, and a non-empty status replaces the current one.
func (in Instance) Renewed(now time.Time, status Status) Instance {
	out := in.Clone()
	now = now.UTC()
	out.LastHeartbeat = now
	out.ExpiresAt = now.Add(in.TTL())
	if status != "" {
		out.Status = status
	}
	return out
}

// Registration is what a client sends to register an instance
// (POST /api/v1/services/{service}/instances).
type Registration struct {
	ID         string            `json:"id,omitempty"`
	Address    string            `json:"address"`
	Port       int               `json:"port"`
	Tags       []string          `json:"tags,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	TTLSeconds int               `json:"ttl_seconds,omitempty"`
	Checks     []Check           `json:"checks,omitempty"`
}

// NewInstance builds the instance that a valid registration creates at now.
// A missing id is generated; a zero TTL takes defaultTTL (at least
// MinCheckedTTLSeconds with checks). Checks get their defaults, and an
// instance with checks starts critical until they pass, as in Consul, so
// no traffic goes to it before it has proved it serves. Call Validate
// first.
func NewInstance(service string, r Registration, now time.Time, defaultTTL time.Duration) Instance {
	now = now.UTC()
	in := Instance{
		Service:       service,
		ID:            r.ID,
		Address:       r.Address,
		Port:          r.Port,
		Tags:          r.Tags,
		Metadata:      r.Metadata,
		TTLSeconds:    r.TTLSeconds,
		Status:        StatusPassing,
		RegisteredAt:  now,
		LastHeartbeat: now,
	}
	if in.ID == "" {
		in.ID = NewID()
	}
	if in.TTLSeconds == 0 {
		in.TTLSeconds = int(defaultTTL / time.Second)
		in.TTLSeconds = min(max(in.TTLSeconds, MinTTLSeconds), MaxTTLSeconds)
		if len(r.Checks) > 0 {
			in.TTLSeconds = max(in.TTLSeconds, MinCheckedTTLSeconds)
		}
	}
	for _, c := range r.Checks {
		in.Checks = append(in.Checks, c.withDefaults())
	}
	if len(in.Checks) > 0 {
		in.Status = StatusCritical
	}
	in.ExpiresAt = now.Add(in.TTL())
	return in.Clone()
}

// NewID returns a random instance id: 16 lowercase hex digits.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
