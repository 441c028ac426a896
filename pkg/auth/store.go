package auth

import (
	"context"
	"errors"
)

// Errors that token stores return.
var (
	// ErrTokenNotFound: no token has that accessor.
	ErrTokenNotFound = errors.New("token not found")
	// ErrBootstrapped: a bootstrap was asked for, but a token exists.
	ErrBootstrapped = errors.New("tokens already exist; bootstrap is done")
)

// Store keeps tokens, beside the registry, so that every Saga on one
// store honours the same tokens. Every store passes the authtest suite.
type Store interface {
	// CreateToken stores t. Accessors and hashes are random, so a store
	// need not check that they are unique.
	CreateToken(ctx context.Context, t Token) error
	// BootstrapToken stores t only if the store holds no token at all,
	// atomically; else ErrBootstrapped.
	BootstrapToken(ctx context.Context, t Token) error
	// RevokeToken removes the token with that accessor and returns it;
	// ErrTokenNotFound when there is none.
	RevokeToken(ctx context.Context, accessor string) (Token, error)
	// ListTokens returns every token, in no particular order.
	ListTokens(ctx context.Context) ([]Token, error)
	// TokenChanges receives a value after the tokens changed, by this
	// process or (for a shared store) another one, and when changes may
	// have been missed; the reader then lists the tokens again. Values are
	// coalesced: one may stand for many changes.
	TokenChanges() <-chan struct{}
}
