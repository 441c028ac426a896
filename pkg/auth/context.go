package auth

import "context"

type tokenKey struct{}

// WithToken returns ctx carrying the token a request was authenticated
// with.
func WithToken(ctx context.Context, t Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, t)
}

// TokenFrom returns the token ctx carries, if any.
func TokenFrom(ctx context.Context) (Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(Token)
	return t, ok
}
