package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Role is what a token may do. Each role may do everything the one
// before it may.
type Role string

// The roles of SPEC §6.
const (
	RoleRead  Role = "read"  // lookups, the catalogue, blocking queries, events, /metrics
	RoleWrite Role = "write" // read, plus register, heartbeat and deregister
	RoleAdmin Role = "admin" // everything, including token management
)

var roleRank = map[Role]int{RoleRead: 1, RoleWrite: 2, RoleAdmin: 3}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if _, ok := roleRank[r]; !ok {
		return "", fmt.Errorf("%q is not a role (read, write or admin)", s)
	}
	return r, nil
}

// Allows reports whether a token of role r may do what need requires.
func (r Role) Allows(need Role) bool { return roleRank[r] >= roleRank[need] && roleRank[need] > 0 }

// SecretPrefix starts every secret, so that secret scanners can spot one.
const SecretPrefix = "saga_"

// secretBytes is how many random bytes a secret carries.
const secretBytes = 32

// Token is a token as the store keeps it: never its secret, only the
// secret's hash.
type Token struct {
	// Accessor is the token's public id, shown in lists and audit lines.
	Accessor    string    `json:"accessor"`
	SecretHash  string    `json:"secret_hash"` // hex SHA-256 of the secret
	Description string    `json:"description,omitempty"`
	Role        Role      `json:"role"`
	Services    []string  `json:"services,omitempty"` // name globs; empty: every service
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"` // zero: never
}

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

// InScope reports whether the token may see or change service.
func (t Token) InScope(service string) bool {
	if len(t.Services) == 0 {
		return true
	}
	for _, glob := range t.Services {
		if ok, _ := path.Match(glob, service); ok {
			return true
		}
	}
	return false
}

// Scoped reports whether the token is limited to some services.
func (t Token) Scoped() bool { return len(t.Services) > 0 }

// NewSecret returns a new secret: SecretPrefix and 32 random bytes in
// unpadded URL-safe base64.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckSecret reports why s cannot be a secret, or nil. It checks the
// form only: a secret of the right form may still be unknown.
func CheckSecret(s string) error {
	body, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return errors.New("a token starts with " + SecretPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < secretBytes {
		return fmt.Errorf("a token is %s followed by at least %d random bytes in URL-safe base64", SecretPrefix, secretBytes)
	}
	return nil
}

// HashSecret is the hash under which a secret's token is kept.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewAccessor returns a new public id, a random UUID (version 4).
func NewAccessor() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate an accessor: %w", err)
	}
	return formatUUID(b), nil
}

// formatUUID shapes 16 bytes as a version 4 UUID.
func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// CheckScope reports why glob cannot be a service scope, or nil: it is a
// service name in which * and ? may stand for characters.
func CheckScope(glob string) error {
	if glob == "" || len(glob) > 128 {
		return errors.New("a scope is a service name of 1 to 128 characters in which * and ? match any")
	}
	for _, c := range glob {
		ok := c == '*' || c == '?' || c == '.' || c == '_' || c == '-' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return fmt.Errorf("%q is not a service name glob: only letters, digits, '.', '_', '-', '*' and '?'", glob)
		}
	}
	return nil
}
