package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/registry"
)

// Tokens (auth.Store) live in one hash, tokensKey: accessor → JSON of
// auth.Token. One key is one Cluster slot, so a script that checks and
// writes it is atomic on every kind of Redis. Each token write publishes
// tokenNotice on the change channel, in the same script, so that every
// Saga process lists the tokens again within a second.

var _ auth.Store = (*Store)(nil)

// tokenNotice is the change channel's notice of a token write. It carries
// nothing: its readers list the tokens again. It starts unlike every
// instance notice (`{"origin":…`), so the subscriber tells it apart by its
// prefix before decoding anything.
const (
	tokenNotice       = `{"tokens":"changed"}`
	tokenNoticePrefix = `{"tokens":`
)

// The token scripts work on KEYS[1], tokensKey. ARGV[1] is the change
// channel, ARGV[2] tokenNotice and ARGV[3] the accessor; a script that
// stores a token takes its JSON as ARGV[4]. Each returns nil when it
// changed nothing, and then publishes nothing.
var (
	// createTokenScript stores a token, replacing one with its accessor.
	createTokenScript = goredis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'OK'
`)
	// bootstrapTokenScript stores a token only while the hash is empty.
	bootstrapTokenScript = goredis.NewScript(`
if redis.call('HLEN', KEYS[1]) > 0 then return false end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'OK'
`)
	// revokeTokenScript removes a token and returns its JSON.
	revokeTokenScript = goredis.NewScript(`
local t = redis.call('HGET', KEYS[1], ARGV[3])
if not t then return false end
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return t
`)
)

// CreateToken stores t, replacing a token with the same accessor.
func (s *Store) CreateToken(ctx context.Context, t auth.Token) error {
	value, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("redis create token: encode token: %w", err)
	}
	_, err = s.writeToken(ctx, "create token", createTokenScript, t.Accessor, value)
	return err
}

// BootstrapToken stores t only while no token exists, atomically;
// auth.ErrBootstrapped otherwise.
func (s *Store) BootstrapToken(ctx context.Context, t auth.Token) error {
	value, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("redis bootstrap token: encode token: %w", err)
	}
	_, err = s.writeToken(ctx, "bootstrap token", bootstrapTokenScript, t.Accessor, value)
	if errors.Is(err, goredis.Nil) {
		return auth.ErrBootstrapped
	}
	return err
}

// RevokeToken removes the token with that accessor and returns it;
// auth.ErrTokenNotFound when there is none.
func (s *Store) RevokeToken(ctx context.Context, accessor string) (auth.Token, error) {
	raw, err := s.writeToken(ctx, "revoke token", revokeTokenScript, accessor)
	if errors.Is(err, goredis.Nil) {
		return auth.Token{}, fmt.Errorf("revoke token %s: %w", accessor, auth.ErrTokenNotFound)
	}
	if raw == "" { // err is not nil; the token may be gone all the same
		return auth.Token{}, err
	}
	t, derr := decodeToken(accessor, raw)
	if derr != nil {
		return auth.Token{}, fmt.Errorf("redis revoke token: %w", derr)
	}
	return t, err // err: revoked, but too few replicas acknowledged it
}

// ListTokens returns every token, in no particular order.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	if err := s.available("list tokens"); err != nil {
		return nil, err
	}
	all, err := s.client.HGetAll(ctx, tokensKey).Result()
	if err != nil {
		return nil, s.fail(ctx, "list tokens", err)
	}
	list := make([]auth.Token, 0, len(all))
	for accessor, raw := range all {
		t, err := decodeToken(accessor, raw)
		if err != nil {
			return nil, fmt.Errorf("redis list tokens: %w", err)
		}
		list = append(list, t)
	}
	return list, nil
}

// TokenChanges receives a value after a token write by any Saga process on
// this Redis, and after each (re)subscription to the change channel, when
// notices may have been missed. It is never closed.
func (s *Store) TokenChanges() <-chan struct{} { return s.tokenChanges }

// tokensChanged signals TokenChanges without waiting: a signal already
// waiting stands for this change too.
func (s *Store) tokensChanged() {
	select {
	case s.tokenChanges <- struct{}{}:
	default:
	}
}

// writeToken runs a token script and returns its answer; goredis.Nil when
// the script changed nothing. With MinReplicasAck it waits for the
// replicas as instance writes do: a change they did not acknowledge in
// time is made and announced, and reported as ErrUnavailable.
func (s *Store) writeToken(ctx context.Context, op string, script *goredis.Script, accessor string, args ...any) (string, error) {
	if err := s.available(op); err != nil {
		return "", err
	}
	keys := []string{tokensKey}
	allArgs := append([]any{changeChannel, tokenNotice, accessor}, args...)
	var raw string
	var acked int64
	var err error
	if s.minAcks == 0 {
		raw, err = script.Run(ctx, s.client, keys, allArgs...).Text()
	} else {
		raw, acked, err = s.runAndWait(ctx, script, keys, allArgs)
	}
	if errors.Is(err, goredis.Nil) {
		return "", err
	}
	if err != nil {
		return "", s.fail(ctx, op, err)
	}
	s.tokensChanged() // at once; the notice reaches the subscriber a little later
	if s.minAcks > 0 && acked < int64(s.minAcks) {
		return raw, fmt.Errorf("redis %s: %w: only %d of %d replicas acknowledged the change within %s; it is on the master but a failover now could lose it",
			op, registry.ErrUnavailable, acked, s.minAcks, s.ackTimeout)
	}
	return raw, nil
}

func decodeToken(accessor, raw string) (auth.Token, error) {
	var t auth.Token
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return auth.Token{}, fmt.Errorf("token %s: %w", accessor, err)
	}
	if t.Accessor != accessor {
		return auth.Token{}, fmt.Errorf("token %s: its record names accessor %q", accessor, t.Accessor)
	}
	return t, nil
}
