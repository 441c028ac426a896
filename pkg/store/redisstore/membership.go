package redisstore

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// membersKey is a sorted set of the Sagas sharing this Redis for active
// health checks: member id → the Redis time (ms) its membership ends.
// Scores use Redis's clock, so the Sagas' clocks need not agree.
const membersKey = "service:members"

// announceScript renews ARGV[1]'s membership for ARGV[2] ms, drops the
// members whose time is up and returns the rest: one round trip.
var announceScript = goredis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// Announce renews self's membership for ttl and returns the live members,
// self included (checks.Membership).
func (s *Store) Announce(ctx context.Context, self string, ttl time.Duration) ([]string, error) {
	members, err := announceScript.Run(ctx, s.client, []string{membersKey}, self, ttl.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redis announce member: %w", err)
	}
	return members, nil
}

// Leave ends self's membership at once (checks.Membership).
func (s *Store) Leave(ctx context.Context, self string) error {
	if err := s.client.ZRem(ctx, membersKey, self).Err(); err != nil {
		return fmt.Errorf("redis leave members: %w", err)
	}
	return nil
}
