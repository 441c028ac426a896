package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// DefaultRefresh is how often Tokens lists the store's tokens again, the
// fallback should a change notice ever be lost unnoticed.
const DefaultRefresh = 30 * time.Second

// Spec is what a new token is made from.
type Spec struct {
	Role        Role
	Services    []string // globs; empty: every service
	Description string
	TTL         time.Duration // 0: never expires
}

// Tokens holds every token in memory, kept current from the store's
// change notices, so that authenticating a request costs no round trip.
type Tokens struct {
	store  Store
	clock  registry.Clock
	logger *slog.Logger

	mu     sync.RWMutex
	byHash map[string]Token
	// writes counts this process's own changes, so that a list read before
	// one of them does not undo it (Load).
	writes uint64
	// changed is closed, and replaced, whenever the tokens held change.
	changed chan struct{}
}

// NewTokens returns an empty cache over store; Load fills it.
func NewTokens(store Store, clock registry.Clock, logger *slog.Logger) *Tokens {
	if clock == nil {
		clock = registry.SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Tokens{store: store, clock: clock, logger: logger.With("component", "tokens"),
		byHash: map[string]Token{}, changed: make(chan struct{})}
}

// Load lists the store's tokens and holds them in place of the ones held.
func (t *Tokens) Load(ctx context.Context) error {
	for {
		t.mu.RLock()
		writes := t.writes
		t.mu.RUnlock()
		list, err := t.store.ListTokens(ctx)
		if err != nil {
			return fmt.Errorf("list tokens: %w", err)
		}
		byHash := make(map[string]Token, len(list))
		for _, tok := range list {
			byHash[tok.SecretHash] = tok
		}
		t.mu.Lock()
		if t.writes == writes {
			t.byHash = byHash
			t.notifyLocked()
			t.mu.Unlock()
			return nil
		}
		t.mu.Unlock() // a change of our own came in between: list again
	}
}

// Run keeps the cache current until ctx ends: it lists the tokens again
// after each change notice, and every refresh as a fallback; after a
// failed list (the store is away), every second until one succeeds.
func (t *Tokens) Run(ctx context.Context, refresh time.Duration) {
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	const retry = time.Second
	timer := time.NewTimer(refresh)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.store.TokenChanges():
		case <-timer.C:
		}
		next := refresh
		if err := t.Load(ctx); err != nil && ctx.Err() == nil {
			t.logger.Warn("reloading tokens failed; keeping the ones held", "err", err)
			next = retry
		}
		timer.Reset(next)
	}
}

// Authenticate returns the token whose secret is secret, or a *Denial.
func (t *Tokens) Authenticate(secret string) (Token, error) {
	if CheckSecret(secret) != nil {
		return Token{}, ErrMalformedToken
	}
	t.mu.RLock()
	tok, ok := t.byHash[HashSecret(secret)]
	t.mu.RUnlock()
	switch {
	case !ok:
		return Token{}, ErrUnknownToken
	case tok.Expired(t.clock.Now()):
		return Token{}, ErrExpiredToken
	}
	return tok, nil
}

// List returns the tokens held, oldest first.
func (t *Tokens) List() []Token {
	t.mu.RLock()
	list := make([]Token, 0, len(t.byHash))
	for _, tok := range t.byHash {
		list = append(list, tok)
	}
	t.mu.RUnlock()
	slices.SortFunc(list, func(a, b Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Accessor, b.Accessor))
	})
	return list
}

// Count is how many tokens are held.
func (t *Tokens) Count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byHash)
}

// Create makes a token from spec and returns it with its secret, which is
// shown once and never kept.
func (t *Tokens) Create(ctx context.Context, spec Spec) (Token, string, error) {
	tok, secret, err := t.newToken(spec)
	if err != nil {
		return Token{}, "", err
	}
	if err := t.store.CreateToken(ctx, tok); err != nil {
		return Token{}, "", err
	}
	t.hold(tok)
	return tok, secret, nil
}

// Bootstrap makes the first admin token, only while no token exists:
// ErrBootstrapped otherwise.
func (t *Tokens) Bootstrap(ctx context.Context) (Token, string, error) {
	tok, secret, err := t.newToken(Spec{Role: RoleAdmin, Description: "bootstrap token"})
	if err != nil {
		return Token{}, "", err
	}
	if err := t.store.BootstrapToken(ctx, tok); err != nil {
		return Token{}, "", err
	}
	t.hold(tok)
	return tok, secret, nil
}

// EnsureAdmin makes sure secret (read from auth.bootstrap_token_file) is
// an admin token, creating it when the store does not hold it. Its
// accessor is derived from the secret, so that several Sagas reading the
// same file create one token, not one each. created reports whether it
// was new.
func (t *Tokens) EnsureAdmin(ctx context.Context, secret, description string) (tok Token, created bool, err error) {
	if err := CheckSecret(secret); err != nil {
		return Token{}, false, err
	}
	hash := HashSecret(secret)
	t.mu.RLock()
	held, ok := t.byHash[hash]
	t.mu.RUnlock()
	if ok && held.Role == RoleAdmin && !held.Expired(t.clock.Now()) {
		return held, false, nil
	}
	tok = Token{
		Accessor:    derivedAccessor(hash),
		SecretHash:  hash,
		Description: description,
		Role:        RoleAdmin,
		CreatedAt:   t.clock.Now().UTC().Truncate(time.Second),
	}
	if err := t.store.CreateToken(ctx, tok); err != nil {
		return Token{}, false, err
	}
	t.hold(tok)
	return tok, true, nil
}

// Revoke removes the token with that accessor; ErrTokenNotFound when
// there is none.
func (t *Tokens) Revoke(ctx context.Context, accessor string) (Token, error) {
	tok, err := t.store.RevokeToken(ctx, accessor)
	if err != nil {
		return Token{}, err
	}
	t.mu.Lock()
	delete(t.byHash, tok.SecretHash)
	t.writes++
	t.notifyLocked()
	t.mu.Unlock()
	return tok, nil
}

func (t *Tokens) hold(tok Token) {
	t.mu.Lock()
	t.byHash[tok.SecretHash] = tok
	t.writes++
	t.notifyLocked()
	t.mu.Unlock()
}

// notifyLocked wakes whoever waits on Changed.
func (t *Tokens) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Changed returns a channel that is closed the next time the tokens held
// change (a reload counts, whether or not it changed anything).
func (t *Tokens) Changed() <-chan struct{} {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.changed
}

// Check reports why tok, which authenticated a request earlier, would not
// authenticate it now: revoked (or replaced), or expired; nil when it
// still would.
func (t *Tokens) Check(tok Token) error {
	t.mu.RLock()
	held, ok := t.byHash[tok.SecretHash]
	t.mu.RUnlock()
	switch {
	case !ok || held.Accessor != tok.Accessor:
		return ErrUnknownToken
	case held.Expired(t.clock.Now()):
		return ErrExpiredToken
	}
	return nil
}

func (t *Tokens) newToken(spec Spec) (Token, string, error) {
	if _, err := ParseRole(string(spec.Role)); err != nil {
		return Token{}, "", &registry.FieldError{Field: "role", Message: err.Error()}
	}
	for _, glob := range spec.Services {
		if err := CheckScope(glob); err != nil {
			return Token{}, "", &registry.FieldError{Field: "services", Message: err.Error()}
		}
	}
	if spec.TTL < 0 {
		return Token{}, "", &registry.FieldError{Field: "expires_in", Message: "must not be negative"}
	}
	secret, err := NewSecret()
	if err != nil {
		return Token{}, "", err
	}
	accessor, err := NewAccessor()
	if err != nil {
		return Token{}, "", err
	}
	now := t.clock.Now().UTC().Truncate(time.Second)
	tok := Token{
		Accessor:    accessor,
		SecretHash:  HashSecret(secret),
		Description: spec.Description,
		Role:        spec.Role,
		Services:    slices.Clone(spec.Services),
		CreatedAt:   now,
	}
	if spec.TTL > 0 {
		tok.ExpiresAt = now.Add(spec.TTL)
	}
	return tok, secret, nil
}

// derivedAccessor is a UUID-shaped accessor that follows from a secret's
// hash, and reveals nothing of it.
func derivedAccessor(hash string) string {
	sum := sha256.Sum256([]byte("saga accessor\x00" + hash))
	return formatUUID(sum[:16])
}

// IsDenial reports whether err is a *Denial, and returns it.
func IsDenial(err error) (*Denial, bool) {
	var d *Denial
	ok := errors.As(err, &d)
	return d, ok
}
