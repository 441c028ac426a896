package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// deregisterTimeout bounds the farewell deregistration once KeepAlive's
// context has ended.
const deregisterTimeout = 5 * time.Second

// firstRetry is the pause after a failed heartbeat; it doubles with every
// further failure, up to the heartbeat interval.
const firstRetry = time.Second

// KeepAliveOptions lets the caller watch a KeepAlive loop.
type KeepAliveOptions struct {
	// OnRegister, when set, is called after every successful registration:
	// the first, and each one after the server forgot the instance.
	OnRegister func(Registered)
	// OnError, when set, is called with every failure that KeepAlive
	// retries (the server unreachable or unavailable, say).
	OnError func(error)
}

// KeepAlive registers an instance of service and keeps it alive: it sends a
// heartbeat at the interval the server asks for, registers again (with the
// same id) when the server no longer knows the instance, and retries
// failures with a growing pause. When ctx ends it deregisters the instance
// and returns nil, or the deregistration's error.
//
// The first registration must succeed: its error is returned at once, as
// an invalid registration will not become valid by retrying.
func (c *Client) KeepAlive(ctx context.Context, service string, reg registry.Registration, opts KeepAliveOptions) error {
	registered, err := c.Register(ctx, service, reg)
	if err != nil {
		return err
	}
	if opts.OnRegister != nil {
		opts.OnRegister(registered)
	}
	reg.ID = registered.Instance.ID // later registrations keep the id
	interval := heartbeatInterval(registered)
	retry := firstRetry

	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.farewell(ctx, service, reg.ID)
		case <-timer.C:
		}
		err := c.renew(ctx, service, &reg, &interval, opts)
		switch {
		case err == nil:
			retry = firstRetry
			timer.Reset(interval)
		case ctx.Err() != nil:
			return c.farewell(ctx, service, reg.ID)
		default:
			if opts.OnError != nil {
				opts.OnError(err)
			}
			timer.Reset(min(retry, interval))
			retry *= 2
		}
	}
}

// renew sends one heartbeat, registering again when the server has
// forgotten the instance; interval takes the server's latest advice.
func (c *Client) renew(ctx context.Context, service string, reg *registry.Registration, interval *time.Duration, opts KeepAliveOptions) error {
	_, err := c.Heartbeat(ctx, service, reg.ID, "")
	if !errors.Is(err, registry.ErrNotFound) {
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		return nil
	}
	registered, err := c.Register(ctx, service, *reg)
	if err != nil {
		return fmt.Errorf("register again: %w", err)
	}
	*interval = heartbeatInterval(registered)
	if opts.OnRegister != nil {
		opts.OnRegister(registered)
	}
	return nil
}

// farewell deregisters with a context of its own, since ctx has ended.
func (c *Client) farewell(ctx context.Context, service, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
	defer cancel()
	err := c.Deregister(ctx, service, id)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("deregister: %w", err)
	}
	return nil
}

// heartbeatInterval is the server's advice, or half the TTL when the server
// gave none or an interval that would let the instance expire.
func heartbeatInterval(r Registered) time.Duration {
	ttl := r.Instance.TTL()
	interval := r.HeartbeatInterval
	if ttl > 0 && (interval <= 0 || interval >= ttl) {
		interval = ttl / 2
	}
	if interval <= 0 {
		interval = time.Second
	}
	return interval
}
