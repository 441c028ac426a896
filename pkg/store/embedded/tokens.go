package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/registry"
)

// Tokens (auth.Store) live in the tokens bucket, accessor → JSON of
// auth.Token. They are few and rarely written, so each token write is a
// bbolt transaction of its own, outside the group commit. Memory holds the
// committed tokens, as it holds the committed instances: a write whose
// commit failed is never listed, even when the failure left part of it in
// the file, and the next token write puts the file right again.

var _ auth.Store = (*Store)(nil)

type tokenState struct {
	// mu serializes token writes, so that memory changes in the order the
	// file does, and guards held and repair.
	mu   sync.Mutex
	held map[string]auth.Token // the committed tokens, by accessor
	// repair names the tokens that failed writes touched; the next token
	// write first puts them back as held says.
	repair map[string]struct{}
	// changes is TokenChanges: one buffered signal stands for any number
	// of writes. It is never closed.
	changes chan struct{}
}

func newTokenState() tokenState {
	return tokenState{
		held:    make(map[string]auth.Token),
		repair:  make(map[string]struct{}),
		changes: make(chan struct{}, 1),
	}
}

// CreateToken stores t, replacing a token with the same accessor.
func (s *Store) CreateToken(ctx context.Context, t auth.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	value, t, err := encodeToken(t)
	if err != nil {
		return err
	}
	return s.writeToken(t.Accessor, func(b *bolt.Bucket) error {
		return b.Put([]byte(t.Accessor), value)
	}, func(held map[string]auth.Token) { held[t.Accessor] = t })
}

// BootstrapToken stores t only while the store holds no token;
// auth.ErrBootstrapped otherwise. The check and the write are one
// transaction.
func (s *Store) BootstrapToken(ctx context.Context, t auth.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	value, t, err := encodeToken(t)
	if err != nil {
		return err
	}
	return s.writeToken(t.Accessor, func(b *bolt.Bucket) error {
		if k, _ := b.Cursor().First(); k != nil {
			return auth.ErrBootstrapped
		}
		return b.Put([]byte(t.Accessor), value)
	}, func(held map[string]auth.Token) { held[t.Accessor] = t })
}

// RevokeToken removes the token with that accessor and returns it;
// auth.ErrTokenNotFound when there is none.
func (s *Store) RevokeToken(ctx context.Context, accessor string) (auth.Token, error) {
	if err := ctx.Err(); err != nil {
		return auth.Token{}, err
	}
	var revoked auth.Token
	err := s.writeToken(accessor, func(b *bolt.Bucket) error {
		// held is what the file holds once repaired, and writeToken holds
		// the token lock: no other token write comes in between.
		tok, ok := s.tokens.held[accessor]
		if !ok {
			return fmt.Errorf("revoke token %s: %w", accessor, auth.ErrTokenNotFound)
		}
		revoked = tok
		return b.Delete([]byte(accessor))
	}, func(held map[string]auth.Token) { delete(held, accessor) })
	if err != nil {
		return auth.Token{}, err
	}
	return revoked, nil
}

// ListTokens returns every committed token, in no particular order.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	list := make([]auth.Token, 0, len(s.tokens.held))
	for _, t := range s.tokens.held {
		t.Services = append([]string(nil), t.Services...) // the caller may change its copy
		list = append(list, t)
	}
	return list, nil
}

// TokenChanges receives a value after each token write. It is never closed.
func (s *Store) TokenChanges() <-chan struct{} { return s.tokens.changes }

// writeToken runs fn on the tokens bucket in a write transaction of its
// own, after putting back what failed token writes touched. Once the
// transaction has committed, apply changes memory and TokenChanges fires.
// An answer of fn (auth.ErrBootstrapped, auth.ErrTokenNotFound) writes
// nothing; a failed commit is registry.ErrUnavailable and makes the store
// refuse changes until the probe finds the disk writable again, as a
// failed batch does (commit.go).
func (s *Store) writeToken(accessor string, fn func(*bolt.Bucket) error, apply func(held map[string]auth.Token)) error {
	ts := &s.tokens
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s.mu.Lock()
	err := s.writable()
	db := s.db
	s.mu.Unlock()
	if err != nil {
		return err
	}

	err = s.update(db, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		for a := range ts.repair {
			if err := putHeldToken(b, a, ts.held); err != nil {
				return err
			}
		}
		return fn(b)
	})
	if errors.Is(err, auth.ErrBootstrapped) || errors.Is(err, auth.ErrTokenNotFound) {
		return err
	}
	if err != nil {
		ts.repair[accessor] = struct{}{}
		err = fmt.Errorf("write data file: %w: %w", registry.ErrUnavailable, err)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return errClosed // Close closed the file under us: not a disk failure
		}
		if s.failed == nil {
			s.failed, s.failedAt = err, s.opts.clock.Now()
			s.logger.Error("writing the data file failed; refusing changes until the disk takes writes again", "err", err)
		}
		return err
	}
	clear(ts.repair)
	apply(ts.held)
	select {
	case ts.changes <- struct{}{}:
	default: // a signal is already waiting; it stands for this write too
	}
	return nil
}

// putHeldToken writes a token back as memory holds it, or deletes it when
// memory holds none.
func putHeldToken(b *bolt.Bucket, accessor string, held map[string]auth.Token) error {
	t, ok := held[accessor]
	if !ok {
		return b.Delete([]byte(accessor))
	}
	value, _, err := encodeToken(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(accessor), value)
}

// encodeToken returns t's record, and t as a restart will load it: the
// record is decoded again, so that memory never holds what the file
// cannot give back.
func encodeToken(t auth.Token) ([]byte, auth.Token, error) {
	if t.Accessor == "" || len(t.Accessor) > bolt.MaxKeySize {
		return nil, auth.Token{}, fmt.Errorf("token accessor of %d bytes cannot be stored", len(t.Accessor))
	}
	value, err := json.Marshal(t)
	if err != nil {
		return nil, auth.Token{}, fmt.Errorf("token %s cannot be stored: %w", t.Accessor, err)
	}
	stored, err := decodeToken(t.Accessor, value)
	if err != nil {
		return nil, auth.Token{}, fmt.Errorf("token %s cannot be stored: %w", t.Accessor, err)
	}
	return value, stored, nil
}

func decodeToken(accessor string, value []byte) (auth.Token, error) {
	var t auth.Token
	if err := json.Unmarshal(value, &t); err != nil {
		return auth.Token{}, err
	}
	if t.Accessor != accessor {
		return auth.Token{}, fmt.Errorf("record names accessor %q", t.Accessor)
	}
	return t, nil
}

// loadTokens reads every token into memory.
func (s *Store) loadTokens(tx *bolt.Tx) error {
	return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		t, err := decodeToken(string(k), v)
		if err != nil {
			return fmt.Errorf("token %q: %w", k, err)
		}
		s.tokens.held[t.Accessor] = t
		return nil
	})
}
