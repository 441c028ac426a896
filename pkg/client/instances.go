package client

import (
	"context"
	"net/http"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Registered is the answer to a registration.
type Registered struct {
	Instance registry.Instance
	// HeartbeatInterval is how often the server asks to be sent heartbeats.
	HeartbeatInterval time.Duration
	// Created is true for a new instance, false when one with the same id
	// was replaced.
	Created bool
}

// Register registers an instance of service, or replaces the instance with
// the same id. A registration without an id gets one from the server.
func (c *Client) Register(ctx context.Context, service string, reg registry.Registration) (Registered, error) {
	var wire struct {
		registry.Instance
		HeartbeatIntervalSeconds float64 `json:"heartbeat_interval_seconds"`
	}
	r, err := c.call(ctx, http.MethodPost, servicePath(service)+"/instances", nil, reg, &wire)
	if err != nil {
		return Registered{}, err
	}
	return Registered{
		Instance:          wire.Instance,
		HeartbeatInterval: time.Duration(wire.HeartbeatIntervalSeconds * float64(time.Second)),
		Created:           r.status == http.StatusCreated,
	}, nil
}

// Renewal is the answer to a heartbeat.
type Renewal struct {
	ExpiresAt  time.Time `json:"expires_at"`
	TTLSeconds int       `json:"ttl_seconds"`
}

// Heartbeat renews an instance's TTL and, when status is not empty, sets its
// status. An instance the server does not know (never registered, or
// already expired) gives an error that matches registry.ErrNotFound: the
// caller must register again.
func (c *Client) Heartbeat(ctx context.Context, service, id string, status registry.Status) (Renewal, error) {
	var body any
	if status != "" {
		body = struct {
			Status registry.Status `json:"status"`
		}{status}
	}
	var renewal Renewal
	_, err := c.call(ctx, http.MethodPut, instancePath(service, id)+"/heartbeat", nil, body, &renewal)
	return renewal, err
}

// Deregister removes an instance. An unknown instance gives an error that
// matches registry.ErrNotFound.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	_, err := c.call(ctx, http.MethodDelete, instancePath(service, id), nil, nil, nil)
	return err
}

// Instance returns one live instance.
func (c *Client) Instance(ctx context.Context, service, id string) (registry.Instance, error) {
	var in registry.Instance
	_, err := c.call(ctx, http.MethodGet, instancePath(service, id), nil, nil, &in)
	return in, err
}
