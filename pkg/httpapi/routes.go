package httpapi

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// routes declares every route of the API (SPEC §2) in one place, each with
// the access it needs (SPEC §6). Every request that changes something is
// audited, refused ones too.
func (a *API) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(a.instrument, middleware.GetHead, a.authenticate, a.limit)
	r.NotFound(a.handle(func(http.ResponseWriter, *http.Request) error { return errNoRoute }))
	r.MethodNotAllowed(a.handle(a.methodNotAllowed))

	a.route(r, http.MethodGet, "/livez", accessOpen, a.handle(a.livez))
	a.route(r, http.MethodGet, "/readyz", accessOpen, a.handle(a.readyz))
	a.route(r, http.MethodGet, "/metrics", accessRead, a.metrics.handler)
	if a.console != nil {
		// The console's assets hold no registry data: the page reads the
		// API with the user's token, so they are open like the probes.
		a.route(r, http.MethodGet, "/ui", accessOpen, http.RedirectHandler("/ui/", http.StatusMovedPermanently))
		a.route(r, http.MethodGet, "/ui/*", accessOpen, http.StripPrefix("/ui", a.console))
	}

	r.Route("/api/v1", func(r chi.Router) {
		a.route(r, http.MethodGet, "/health", accessOpen, a.handle(a.health))
		a.route(r, http.MethodGet, "/events", accessRead, a.handle(a.events), a.longLived(false))
		a.route(r, http.MethodGet, "/services", accessRead, a.handle(a.catalog), a.longLived(true))
		a.route(r, http.MethodGet, "/services/{service}", accessRead, a.handle(a.lookup), a.longLived(true))
		a.route(r, http.MethodGet, "/services/{service}/health", accessOpen, a.handle(a.serviceHealth))
		a.route(r, http.MethodPost, "/services/{service}/instances", accessWrite, a.handle(a.register))
		a.route(r, http.MethodGet, "/services/{service}/instances/{id}", accessRead, a.handle(a.getInstance))
		a.route(r, http.MethodDelete, "/services/{service}/instances/{id}", accessWrite, a.handle(a.deregister))
		a.route(r, http.MethodPut, "/services/{service}/instances/{id}/heartbeat", accessWrite, a.handle(a.heartbeat))
		a.route(r, http.MethodGet, "/sd/prometheus", accessRead, a.handle(a.prometheusSD))

		a.route(r, http.MethodPost, "/tokens/bootstrap", accessLocal, a.handle(a.bootstrapToken))
		a.route(r, http.MethodPost, "/tokens", accessAdmin, a.handle(a.createToken))
		a.route(r, http.MethodGet, "/tokens", accessAdmin, a.handle(a.listTokens))
		a.route(r, http.MethodGet, "/tokens/self", accessRead, a.handle(a.tokenSelf))
		a.route(r, http.MethodDelete, "/tokens/{accessor}", accessAdmin, a.handle(a.revokeToken))
	})
	return r
}

// route adds one route, behind the check of the access it needs (and the
// audit line, for anything but a read), then the route's own middleware.
func (a *API) route(r chi.Router, method, pattern string, need access, h http.Handler, mw ...func(http.Handler) http.Handler) {
	var chain []func(http.Handler) http.Handler
	if method != http.MethodGet {
		chain = append(chain, a.audited)
	}
	chain = append(chain, a.authorize(need))
	r.With(append(chain, mw...)...).Method(method, pattern, h)
}

// handlerFunc is a handler that reports failure by returning an error,
// which handle turns into the error response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *API) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// methodNotAllowed answers 405 with the Allow header listing the methods
// the route has.
func (a *API) methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if a.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
			if m == http.MethodGet {
				allowed = append(allowed, http.MethodHead) // middleware.GetHead serves it
			}
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return errMethodNotAllowed
}
