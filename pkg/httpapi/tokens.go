package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/registry"
)

// Bounds on what a token request may carry.
const (
	maxTokenDescription = 256
	maxTokenServices    = 64
)

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Role        string   `json:"role"`
	Services    []string `json:"services"`
	Description string   `json:"description"`
	// ExpiresIn is a duration ("720h") or a number of seconds; absent:
	// the token never expires.
	ExpiresIn json.RawMessage `json:"expires_in"`
}

// tokenInfo is a token as the API shows it: never its secret or hash.
type tokenInfo struct {
	Accessor    string    `json:"accessor"`
	Role        auth.Role `json:"role"`
	Services    []string  `json:"services"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Expired     bool      `json:"expired"`
}

// newTokenAnswer is a new token, with the secret shown this once.
type newTokenAnswer struct {
	tokenInfo
	Secret string `json:"secret"`
}

type tokenList struct {
	Tokens []tokenInfo `json:"tokens"`
}

func (a *API) info(t auth.Token) tokenInfo {
	services := t.Services
	if services == nil {
		services = []string{}
	}
	return tokenInfo{
		Accessor: t.Accessor, Role: t.Role, Services: services, Description: t.Description,
		CreatedAt: t.CreatedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(), Expired: t.Expired(a.clock.Now()),
	}
}

// errScopedAdmin refuses token management to an admin token with a scope:
// it could otherwise make tokens wider than itself.
var errScopedAdmin = &auth.Denial{Reason: "scope", Forbidden: true,
	Message: "managing tokens needs an admin token without a service scope"}

// unscoped refuses a request whose token has a service scope, when auth is on.
func (a *API) unscoped(r *http.Request) error {
	if _, scoped := a.scope(r); scoped {
		return errScopedAdmin
	}
	return nil
}

// createToken handles POST /api/v1/tokens.
func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.unscoped(r); err != nil {
		return err
	}
	var req tokenRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	spec, err := req.spec()
	if err != nil {
		return err
	}
	tok, secret, err := a.tokens.Create(r.Context(), spec)
	if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	noteAudit(r, "token", tok.Accessor)
	w.Header().Set("Location", "/api/v1/tokens/"+tok.Accessor)
	writeJSON(w, http.StatusCreated, newTokenAnswer{tokenInfo: a.info(tok), Secret: secret})
	return nil
}

func (req tokenRequest) spec() (auth.Spec, error) {
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return auth.Spec{}, &registry.FieldError{Field: "role", Message: "must be read, write or admin"}
	}
	if len(req.Services) > maxTokenServices {
		return auth.Spec{}, &registry.FieldError{Field: "services", Message: fmt.Sprintf("at most %d globs", maxTokenServices)}
	}
	for _, glob := range req.Services {
		if err := auth.CheckScope(glob); err != nil {
			return auth.Spec{}, &registry.FieldError{Field: "services", Message: err.Error()}
		}
	}
	if len(req.Description) > maxTokenDescription || !utf8.ValidString(req.Description) {
		return auth.Spec{}, &registry.FieldError{Field: "description", Message: fmt.Sprintf("at most %d bytes of UTF-8", maxTokenDescription)}
	}
	ttl, err := parseExpiresIn(req.ExpiresIn)
	if err != nil {
		return auth.Spec{}, err
	}
	return auth.Spec{Role: role, Services: req.Services, Description: req.Description, TTL: ttl}, nil
}

// maxTokenTTL keeps expiry dates readable and far from overflow.
const maxTokenTTL = 100 * 365 * 24 * time.Hour

// parseExpiresIn reads expires_in: absent or null for never, else a
// positive duration string or number of seconds.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	bad := &registry.FieldError{Field: "expires_in", Message: `must be a positive duration ("720h") or number of seconds, at most 100 years`}
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var d time.Duration
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if d, err = registry.ParseDuration(s); err != nil {
			return 0, bad
		}
	} else {
		secs, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || secs <= 0 || secs > int64(maxTokenTTL/time.Second) {
			return 0, bad
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 || d > maxTokenTTL {
		return 0, bad
	}
	return d, nil
}

// bootstrapToken handles POST /api/v1/tokens/bootstrap: the first admin
// token, while no token exists.
func (a *API) bootstrapToken(w http.ResponseWriter, r *http.Request) error {
	tok, secret, err := a.tokens.Bootstrap(r.Context())
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	noteAudit(r, "token", tok.Accessor)
	w.Header().Set("Location", "/api/v1/tokens/"+tok.Accessor)
	writeJSON(w, http.StatusCreated, newTokenAnswer{tokenInfo: a.info(tok), Secret: secret})
	return nil
}

// listTokens handles GET /api/v1/tokens.
func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	if err := a.unscoped(r); err != nil {
		return err
	}
	list := tokenList{Tokens: []tokenInfo{}}
	for _, t := range a.tokens.List() {
		list.Tokens = append(list.Tokens, a.info(t))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// errNoToken answers /tokens/self without a valid token.
var errNoToken = &auth.Denial{Reason: "missing_token", Message: "send a valid token to see it: Authorization: Bearer saga_…"}

// tokenSelf handles GET /api/v1/tokens/self: the caller's own token.
func (a *API) tokenSelf(w http.ResponseWriter, r *http.Request) error {
	tok, ok := auth.TokenFrom(r.Context())
	if !ok {
		if err, refused := r.Context().Value(denialKey{}).(error); refused {
			return err
		}
		return errNoToken
	}
	writeJSON(w, http.StatusOK, a.info(tok))
	return nil
}

// revokeToken handles DELETE /api/v1/tokens/{accessor}.
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.unscoped(r); err != nil {
		return err
	}
	accessor := chi.URLParam(r, "accessor")
	noteAudit(r, "token", accessor)
	if _, err := a.tokens.Revoke(r.Context(), accessor); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
