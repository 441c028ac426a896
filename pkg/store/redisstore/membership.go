package redisstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// membersKey is a sorted set of the Sagas sharing this Redis for active
// health checks: member id → the Redis time (ms) its membership ends.
// Scores use Redis's clock, so the Sagas' clocks need not agree.
//
// A Saga that pulls deadlines (pull.go) marks its membership: its score
// ends in .5 (half a millisecond later). The member ids stay as they
// are, so every Saga's checks hash over the same ids; a Saga of a
// release that does not pull writes whole milliseconds.
const membersKey = "service:members"

// pullMark is how a pulling member's score ends, as Redis prints it.
const pullMark = ".5"

// announceScript renews ARGV[1]'s membership for ARGV[2] ms, drops the
// members whose time is up and returns the rest with their scores: one
// round trip. The membership is marked as pulling where Redis has
// ZMSCORE (6.2 and later), which pulling needs.
var announceScript = goredis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = string.format('%d', now + tonumber(ARGV[2]))
local probe = redis.pcall('ZMSCORE', KEYS[1], ARGV[1])
if type(probe) == 'table' and not probe.err then score = score .. '` + pullMark + `' end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
`)

// Announce renews self's membership for ttl and returns the live members,
// self included (checks.Membership). It also decides whether this store's
// heartbeats may leave plain heartbeat notices out: only while every live
// member pulls, and no more processes listen to the change channel than
// there are members (a Saga of a release before memberships listens
// without announcing itself), for the next ttl/2.
func (s *Store) Announce(ctx context.Context, self string, ttl time.Duration) ([]string, error) {
	reply, err := announceScript.Run(ctx, s.client, []string{membersKey}, self, ttl.Milliseconds()).StringSlice()
	if err != nil {
		s.quiet.Store(0)
		return nil, fmt.Errorf("redis announce member: %w", err)
	}
	members := make([]string, 0, len(reply)/2)
	allPull := true
	for i := 0; i+1 < len(reply); i += 2 {
		members = append(members, reply[i])
		allPull = allPull && strings.HasSuffix(reply[i+1], pullMark)
	}
	quietUntil := int64(0)
	if allPull && len(members) > 0 {
		listeners, err := s.listeners(ctx)
		if err == nil && listeners <= int64(len(members)) {
			quietUntil = time.Now().Add(ttl / 2).UnixNano()
		}
	}
	s.quiet.Store(quietUntil)
	return members, nil
}

// listeners counts the subscribers of the change channel, on the node
// where go-redis subscribes (on a Cluster, the master of its slot).
func (s *Store) listeners(ctx context.Context) (int64, error) {
	conn := s.client
	if c, ok := s.client.(*goredis.ClusterClient); ok {
		node, err := c.MasterForKey(ctx, changeChannel)
		if err != nil {
			return 0, err
		}
		conn = node
	}
	counts, err := conn.PubSubNumSub(ctx, changeChannel).Result()
	if err != nil {
		return 0, err
	}
	return counts[changeChannel], nil
}

// quietHeartbeats reports whether every Saga on this Redis pulls
// deadlines, as last announced: heartbeatScript's ARGV[3]. Unknown or
// stale (no Announce within ttl/2): no.
func (s *Store) quietHeartbeats() bool {
	return time.Now().UnixNano() < s.quiet.Load()
}

// Leave ends self's membership at once (checks.Membership).
func (s *Store) Leave(ctx context.Context, self string) error {
	s.quiet.Store(0)
	if err := s.client.ZRem(ctx, membersKey, self).Err(); err != nil {
		return fmt.Errorf("redis leave members: %w", err)
	}
	return nil
}
