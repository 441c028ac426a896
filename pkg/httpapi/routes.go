package httpapi

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// routes declares every route of the API (SPEC §2) in one place.
func (a *API) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(a.instrument, middleware.GetHead)
	r.NotFound(a.handle(func(http.ResponseWriter, *http.Request) error { return errNoRoute }))
	r.MethodNotAllowed(a.handle(a.methodNotAllowed))

	r.Get("/livez", a.handle(a.livez))
	r.Get("/readyz", a.handle(a.readyz))
	r.Method(http.MethodGet, "/metrics", a.metrics.handler)

	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/health", a.handle(a.health))
		r.With(a.longLived(false)).Get("/events", a.handle(a.events))
		r.With(a.longLived(true)).Get("/services", a.handle(a.catalog))
		r.With(a.longLived(true)).Get("/services/{service}", a.handle(a.lookup))
		r.Get("/services/{service}/health", a.handle(a.serviceHealth))
		r.Post("/services/{service}/instances", a.handle(a.register))
		r.Get("/services/{service}/instances/{id}", a.handle(a.getInstance))
		r.Delete("/services/{service}/instances/{id}", a.handle(a.deregister))
		r.Put("/services/{service}/instances/{id}/heartbeat", a.handle(a.heartbeat))
	})
	return r
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
