package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// Roles of a token (SPEC §6): each may do everything the one before it may.
const (
	RoleRead  = "read"  // lookups, the catalogue, blocking queries, events, /metrics
	RoleWrite = "write" // read, plus register, heartbeat and deregister
	RoleAdmin = "admin" // everything, including token management
)

// TokenSpec is what a new token is made from.
type TokenSpec struct {
	Role        string        // RoleRead, RoleWrite or RoleAdmin
	Services    []string      // service name globs such as "payments-*"; empty: every service
	Description string        // for the people who read the list
	ExpiresIn   time.Duration // 0: the token never expires
}

// Token is a token as the server lists it: its public accessor and what it
// may do, never its secret.
type Token struct {
	Accessor    string    `json:"accessor"`
	Role        string    `json:"role"`
	Services    []string  `json:"services"` // empty: every service
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"` // zero: never
	Expired     bool      `json:"expired"`
}

// NewToken is a token just made, with its secret. The server shows the
// secret in this one answer only; it keeps nothing but its hash.
type NewToken struct {
	Token
	Secret string `json:"secret"`
}

// Bootstrap makes the first admin token. The server grants it only while
// no token exists, and only to a client on a loopback address; otherwise
// the error has the code CodePermissionDenied.
func (c *Client) Bootstrap(ctx context.Context) (NewToken, error) {
	var tok NewToken
	if _, err := c.call(ctx, http.MethodPost, "/api/v1/tokens/bootstrap", nil, nil, &tok); err != nil {
		return NewToken{}, err
	}
	return tok.normalized(), nil
}

// CreateToken makes a token as spec says. It takes an admin token.
func (c *Client) CreateToken(ctx context.Context, spec TokenSpec) (NewToken, error) {
	body := struct {
		Role        string   `json:"role"`
		Services    []string `json:"services,omitempty"`
		Description string   `json:"description,omitempty"`
		// A Go duration string, which the server reads as the CLI's flags do.
		ExpiresIn string `json:"expires_in,omitempty"`
	}{Role: spec.Role, Services: spec.Services, Description: spec.Description}
	if spec.ExpiresIn != 0 {
		body.ExpiresIn = spec.ExpiresIn.String()
	}
	var tok NewToken
	if _, err := c.call(ctx, http.MethodPost, "/api/v1/tokens", nil, body, &tok); err != nil {
		return NewToken{}, err
	}
	return tok.normalized(), nil
}

// Tokens lists every token. It takes an admin token.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out); err != nil {
		return nil, err
	}
	list := make([]Token, 0, len(out.Tokens))
	for _, t := range out.Tokens {
		list = append(list, t.normalized())
	}
	return list, nil
}

// TokenSelf returns the token the client sends. Without one, the error has
// the code CodeUnauthenticated.
func (c *Client) TokenSelf(ctx context.Context) (Token, error) {
	var tok Token
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/tokens/self", nil, nil, &tok); err != nil {
		return Token{}, err
	}
	return tok.normalized(), nil
}

// RevokeToken deletes the token with this accessor; it stops working on
// every Saga that shares the store within a second. An unknown accessor
// gives an error that matches registry.ErrNotFound.
func (c *Client) RevokeToken(ctx context.Context, accessor string) error {
	if accessor == "" {
		// "/api/v1/tokens/" would name no token, or the list.
		return errors.New("accessor: must not be empty")
	}
	_, err := c.call(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(accessor), nil, nil, nil)
	return err
}

// normalized gives an unscoped token an empty list rather than nil, so
// that it encodes as [] the way the server sends it.
func (t Token) normalized() Token {
	if t.Services == nil {
		t.Services = []string{}
	}
	return t
}

func (t NewToken) normalized() NewToken {
	t.Token = t.Token.normalized()
	return t
}
