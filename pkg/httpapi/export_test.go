package httpapi

import "github.com/go-chi/chi/v5"

// Router exposes the API's router, so that tests can list its routes.
func (a *API) Router() chi.Routes { return a.router }
