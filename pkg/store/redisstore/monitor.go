package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
)

const (
	// healthInterval is how often a connected store pings Redis.
	healthInterval = time.Second
	// maxBackoff caps the wait between reconnection attempts, so the store
	// is back within a few seconds of Redis.
	maxBackoff = 2 * time.Second
)

// backoff is the wait before reconnection attempt step (0, 1, …):
// 100 ms doubling up to maxBackoff.
func backoff(step int) time.Duration {
	if step >= 5 {
		return maxBackoff
	}
	return min(100*time.Millisecond<<step, maxBackoff)
}

// available refuses at once while Redis is known to be away, rather than
// making every caller wait for a dial timeout.
func (s *Store) available(op string) error {
	if !s.up.Load() {
		return fmt.Errorf("redis %s: %w: redis is unreachable; reconnecting in the background", op, registry.ErrUnavailable)
	}
	return nil
}

// fail turns a command's error into the store's error. A lost connection
// marks the store degraded and wraps registry.ErrUnavailable; so do the
// replies of a Redis that is up but cannot serve writes (a replica during
// a failover, a cluster without a majority): heartbeats fail there as
// surely as on a lost connection, so the store must recover, with its
// grace, before it serves again. Replies that say "not now" (a resharding
// slot, a busy script) are ErrUnavailable without more. Other Redis
// replies are bugs and pass through.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("redis %s: %w", op, ctx.Err())
	}
	var reply goredis.Error
	if errors.As(err, &reply) {
		for _, prefix := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "NOREPLICAS"} {
			if goredis.HasErrorPrefix(err, prefix) {
				s.markDown(err)
				return fmt.Errorf("redis %s: %w: %w", op, registry.ErrUnavailable, err)
			}
		}
		for _, prefix := range []string{"TRYAGAIN", "BUSY"} {
			if goredis.HasErrorPrefix(err, prefix) {
				return fmt.Errorf("redis %s: %w: %w", op, registry.ErrUnavailable, err)
			}
		}
		return fmt.Errorf("redis %s: %w", op, err)
	}
	s.markDown(err)
	return fmt.Errorf("redis %s: %w: %w", op, registry.ErrUnavailable, err)
}

// markDown records that Redis went away and wakes the monitor to reconnect.
func (s *Store) markDown(err error) {
	if s.up.Swap(false) {
		s.logger.Warn("redis unreachable; serving degraded", "err", err)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// monitor pings Redis while connected, and reconnects with back-off while
// not, logging one line per back-off step.
func (s *Store) monitor(ctx context.Context) {
	step := 0
	for {
		if s.up.Load() {
			step = 0
			select {
			case <-ctx.Done():
				return
			case <-s.kick:
			case <-time.After(healthInterval):
			}
			s.feed.Flush()
			if s.up.Load() {
				if err := s.ping(ctx); err != nil && ctx.Err() == nil {
					s.markDown(err)
				}
			}
			continue
		}
		err := s.ping(ctx)
		if err == nil {
			err = s.recover(ctx)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		delay := backoff(step)
		step++
		s.logger.Warn("redis unreachable; retrying", "attempt", step, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (s *Store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return s.client.Ping(ctx).Err()
}

// recover runs when Redis answers again: instances could not heartbeat
// while it was away, so they get one TTL of grace (self-preservation)
// before the store reports itself up and tells its reader to resync.
func (s *Store) recover(ctx context.Context) error {
	s.known.Clear() // a Redis that lost its data lost the catalogue too
	now := s.clock.Now()
	if err := s.grantGrace(ctx, now); err != nil {
		return fmt.Errorf("grant grace after reconnecting: %w", err)
	}
	s.due.lost()
	s.up.Store(true)
	s.logger.Info("redis reachable again; granted one TTL of grace before expiring", "now", now)
	s.feed.Resync()
	return nil
}
