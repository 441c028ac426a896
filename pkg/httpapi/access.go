package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/auth"
)

// access is what a route asks of its caller (SPEC §6). Every route in
// routes.go names one.
type access int

const (
	// accessOpen: the probes; no token, and open in protected mode.
	accessOpen access = iota
	accessRead
	accessWrite
	accessAdmin
	// accessLocal: token bootstrap; no token (none exists yet), and only
	// from a loopback address, so that the first admin token cannot be
	// taken over the network.
	accessLocal
)

// role is the token role the access needs; empty for open and local.
func (n access) role() auth.Role {
	switch n {
	case accessRead:
		return auth.RoleRead
	case accessWrite:
		return auth.RoleWrite
	case accessAdmin:
		return auth.RoleAdmin
	}
	return ""
}

func (n access) String() string {
	switch n {
	case accessOpen:
		return "open"
	case accessLocal:
		return "local"
	}
	return string(n.role())
}

// AuthSettings are the access settings that SIGHUP may change.
type AuthSettings struct {
	// Enabled requires a valid token on every route but the open ones.
	Enabled bool
	// ProtectedMode refuses clients that are not on a loopback address
	// while auth is off, except on the open routes.
	ProtectedMode bool
}

// SetAuth changes the access settings for the requests that follow, and
// for the event streams and blocking queries open (guardAccess).
func (a *API) SetAuth(s AuthSettings) {
	a.authSettings.Store(&s)
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	if a.settingsChanged != nil {
		close(a.settingsChanged)
	}
	a.settingsChanged = make(chan struct{})
}

// Answers reports whether a client at addr may be answered by an
// interface that carries no token (DNS): not while protected mode holds,
// unless it is on this machine. With auth on, such an interface answers
// everyone who reaches it: choosing where it listens is the control.
func (a *API) Answers(addr netip.Addr) bool {
	s := a.authSettings.Load()
	return s.Enabled || !s.ProtectedMode || addr.IsLoopback()
}

// authChanged returns a channel closed at the next SetAuth.
func (a *API) authChanged() <-chan struct{} {
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	return a.settingsChanged
}

// guardAccess ends a long-lived request, with the denial as the cause of
// end, as soon as it would no longer be let in: its token revoked or
// expired, or the settings changed to refuse it (auth turned on, protected
// mode for a remote client). A stream must not outlive its permission.
// stop ends the guard.
func (a *API) guardAccess(ctx context.Context, r *http.Request, need access, end context.CancelCauseFunc) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			tokensChanged, settingsChanged := a.tokens.Changed(), a.authChanged()
			if err := a.recheck(r, need); err != nil {
				end(err)
				return
			}
			if !a.waitAccessChange(ctx, r, done, tokensChanged, settingsChanged) {
				return
			}
		}
	}()
	// Wait for the guard: it reads the request, which the router recycles
	// once the handler returns.
	return func() { close(done); <-exited }
}

// waitAccessChange waits until something that decides access may have
// changed: the tokens, the settings, or the request's token's expiry. It
// returns false when the request or the guard ended first.
func (a *API) waitAccessChange(ctx context.Context, r *http.Request, done <-chan struct{}, tokensChanged, settingsChanged <-chan struct{}) bool {
	var expiry <-chan time.Time
	if tok, ok := auth.TokenFrom(r.Context()); ok && !tok.ExpiresAt.IsZero() {
		timer := time.NewTimer(tok.ExpiresAt.Sub(a.clock.Now()))
		defer timer.Stop()
		expiry = timer.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-done:
		return false
	case <-tokensChanged:
	case <-settingsChanged:
	case <-expiry:
	}
	return true
}

// recheck is check for a request let in earlier, with its token looked up
// again.
func (a *API) recheck(r *http.Request, need access) error {
	if tok, ok := auth.TokenFrom(r.Context()); ok && a.authSettings.Load().Enabled {
		if err := a.tokens.Check(tok); err != nil {
			return err
		}
	}
	return a.check(r, need)
}

// Tokens is the API's token cache, for the daemon to bootstrap from a file.
func (a *API) Tokens() *auth.Tokens { return a.tokens }

type denialKey struct{}

// authenticate reads the bearer token of every request that sends one.
// A valid token goes into the request's context (for authorize, the
// per-client limits and the audit); why an invalid one was refused goes
// there too, and matters only on routes that need a token.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		scheme, secret, ok := strings.Cut(header, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			ctx = context.WithValue(ctx, denialKey{}, auth.ErrMalformedToken)
		} else if tok, err := a.tokens.Authenticate(strings.TrimSpace(secret)); err != nil {
			ctx = context.WithValue(ctx, denialKey{}, err)
		} else {
			ctx = auth.WithToken(ctx, tok)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authorize refuses a request that may not use a route of access need.
func (a *API) authorize(need access) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := a.check(r, need); err != nil {
				a.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Denials that do not come from a token.
var (
	errProtectedMode = &auth.Denial{Reason: "protected_mode", Forbidden: true, Message: "saga is in protected mode: " +
		"it answers only clients on this machine while auth is off. Turn auth on (auth.enabled = true) " +
		"and use tokens, or, if the network is trusted, set server.protected_mode = false"}
	errNotLocal = &auth.Denial{Reason: "not_local", Forbidden: true, Message: "token bootstrap is only answered " +
		"on a loopback address: run `saga token bootstrap` on the server's machine, or use auth.bootstrap_token_file"}
)

func (a *API) check(r *http.Request, need access) error {
	switch need {
	case accessOpen:
		return nil
	case accessLocal:
		if !isLoopback(r) {
			return errNotLocal
		}
		return nil
	}
	settings := a.authSettings.Load()
	if !settings.Enabled {
		if settings.ProtectedMode && !isLoopback(r) {
			return errProtectedMode
		}
		return nil
	}
	tok, ok := auth.TokenFrom(r.Context())
	if !ok {
		if err, refused := r.Context().Value(denialKey{}).(error); refused {
			return err
		}
		return auth.ErrMissingToken
	}
	if !tok.Role.Allows(need.role()) {
		return &auth.Denial{Reason: "role", Forbidden: true,
			Message: fmt.Sprintf("this %s token may not do this: it needs the %s role", tok.Role, need.role())}
	}
	if service := chi.URLParam(r, "service"); service != "" && !tok.InScope(service) {
		return outOfScope(service)
	}
	return nil
}

func outOfScope(service string) error {
	return &auth.Denial{Reason: "scope", Forbidden: true,
		Message: fmt.Sprintf("this token's service scope does not include %q", service)}
}

// scope returns the token limiting what the request may see, when auth
// is on and the token has a service scope.
func (a *API) scope(r *http.Request) (auth.Token, bool) {
	if !a.authSettings.Load().Enabled {
		return auth.Token{}, false
	}
	tok, ok := auth.TokenFrom(r.Context())
	return tok, ok && tok.Scoped()
}

// isLoopback reports whether the request comes from this machine.
func isLoopback(r *http.Request) bool {
	addr, err := netip.ParseAddr(remoteIP(r))
	return err == nil && addr.Unmap().IsLoopback()
}

// newDenialCounter counts refused requests by reason.
func newDenialCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "saga_auth_denials_total",
		Help: "Requests refused by authentication or authorization, by reason.",
	}, []string{"reason"})
	reg.MustRegister(c)
	return c
}
