package httpapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// indexHeader carries the index of what a read answered, on every read.
const indexHeader = "X-Saga-Index"

// staleHeader marks a read served from memory while the store is away.
const staleHeader = "X-Saga-Stale"

// getInstance handles GET /api/v1/services/{service}/instances/{id}.
func (a *API) getInstance(w http.ResponseWriter, r *http.Request) error {
	service, id, err := instancePath(r)
	if err != nil {
		return err
	}
	in, ok := a.view.Instance(service, id)
	if !ok {
		return instanceNotFound(service, id, "")
	}
	a.setIndex(w, a.view.ServiceIndex(service))
	writeJSON(w, http.StatusOK, in)
	return nil
}

// lookup handles GET /api/v1/services/{service}, plain or blocking.
func (a *API) lookup(w http.ResponseWriter, r *http.Request) error {
	w.Header().Add("Vary", "Accept-Encoding")
	service := chi.URLParam(r, "service")
	if err := registry.ValidateName("service", service); err != nil {
		return err
	}
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &registry.FieldError{Field: "query", Message: "malformed query string"}
	}
	q, err := parseFilters(params)
	if err != nil {
		return err
	}
	if q.Fields, err = parseFields(params); err != nil {
		return err
	}
	block, err := parseBlocking(params)
	if err != nil {
		return err
	}
	if block.on {
		if err := a.block(w, r, block, func(ctx context.Context) {
			a.view.WaitService(ctx, service, block.index)
		}); err != nil {
			return err
		}
	}
	answer := a.view.LookupAnswer(service, q)
	defer answer.Release()
	a.setIndex(w, answer.Index)
	writeAnswer(w, r, answer)
	return nil
}

// catalog handles GET /api/v1/services, plain or blocking.
func (a *API) catalog(w http.ResponseWriter, r *http.Request) error {
	w.Header().Add("Vary", "Accept-Encoding")
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &registry.FieldError{Field: "query", Message: "malformed query string"}
	}
	block, err := parseCatalogQuery(params)
	if err != nil {
		return err
	}
	if block.on {
		if err := a.block(w, r, block, func(ctx context.Context) {
			a.view.WaitCatalog(ctx, block.index)
		}); err != nil {
			return err
		}
	}
	if tok, scoped := a.scope(r); scoped {
		entries, index := a.view.Catalog()
		inScope := []view.CatalogEntry{}
		for _, e := range entries {
			if tok.InScope(e.Name) {
				inScope = append(inScope, e)
			}
		}
		a.setIndex(w, index)
		writeAnswer(w, r, view.Answer{Body: jsonBody(scopedCatalog{Index: index, Services: inScope}), Index: index})
		return nil
	}
	answer := a.view.CatalogAnswer()
	defer answer.Release()
	a.setIndex(w, answer.Index)
	writeAnswer(w, r, answer)
	return nil
}

// scopedCatalog is the catalogue as a token with a service scope sees it:
// the services inside the scope (SPEC §6), in the shape of CatalogJSON.
type scopedCatalog struct {
	Index    uint64              `json:"index"`
	Services []view.CatalogEntry `json:"services"`
}

// serviceHealthAnswer is the body of a service's health check.
type serviceHealthAnswer struct {
	Service string `json:"service"`
	view.Counts
}

// serviceHealth handles GET /api/v1/services/{service}/health: 200 while at
// least one live instance passes, else 503, for load balancers.
func (a *API) serviceHealth(w http.ResponseWriter, r *http.Request) error {
	service := chi.URLParam(r, "service")
	if err := registry.ValidateName("service", service); err != nil {
		return err
	}
	counts, index := a.view.Health(service)
	status := http.StatusOK
	if counts.Passing == 0 {
		status = http.StatusServiceUnavailable
	}
	a.setIndex(w, index)
	writeJSON(w, status, serviceHealthAnswer{Service: service, Counts: counts})
	return nil
}

// setIndex sets the headers of every read: the index it answered, and
// X-Saga-Stale while the store does not answer and the view serves what it
// last knew (SPEC §2, degraded mode).
func (a *API) setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(indexHeader, strconv.FormatUint(index, 10))
	if a.view.Stale() {
		w.Header().Set(staleHeader, "true")
	}
}

// checkQueryText refuses a query whose names or values are not UTF-8,
// naming the parameter, as a malformed query (?tag=%zz) is refused:
// whatever a read ignores, it does not take bytes that are not text.
func checkQueryText(params url.Values) error {
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !utf8.ValidString(name) {
			return &registry.FieldError{Field: "query", Message: fmt.Sprintf("parameter name %q is not valid UTF-8", name)}
		}
		for _, v := range params[name] {
			if !utf8.ValidString(v) {
				return &registry.FieldError{Field: name, Message: fmt.Sprintf("%q is not valid UTF-8", v)}
			}
		}
	}
	return nil
}

// parseCatalogQuery reads the catalogue's query: index and wait. A
// lookup's filters and fields are refused rather than ignored, since the
// catalogue would answer as if they held; other unknown parameters are
// ignored, as a lookup ignores them.
func parseCatalogQuery(params url.Values) (blocking, error) {
	if err := checkQueryText(params); err != nil {
		return blocking{}, err
	}
	for _, name := range []string{"tag", "meta", "status"} {
		if params.Has(name) {
			return blocking{}, &registry.FieldError{Field: name, Message: "not supported on the catalogue; it filters a lookup of one service (GET /api/v1/services/{service})"}
		}
	}
	if params.Has("fields") {
		return blocking{}, &registry.FieldError{Field: "fields", Message: "not supported on the catalogue; it picks the instance fields of a lookup of one service (GET /api/v1/services/{service})"}
	}
	return parseBlocking(params)
}

// parseFields reads a lookup's fields=: instance keys, comma-separated,
// the parameter repeated or not; spaces around a name are allowed. None
// is the full form.
func parseFields(params url.Values) (view.Fields, error) {
	if !params.Has("fields") {
		return 0, nil
	}
	var names []string
	for _, list := range params["fields"] {
		for name := range strings.SplitSeq(list, ",") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	fields, err := view.ParseFields(names)
	if err != nil {
		return 0, &registry.FieldError{Field: "fields", Message: err.Error()}
	}
	return fields, nil
}

// parseFilters reads a lookup's tag=, meta=key:value and status= filters,
// after checking that the whole query is text.
func parseFilters(params url.Values) (view.Query, error) {
	var q view.Query
	if err := checkQueryText(params); err != nil {
		return q, err
	}
	for _, tag := range params["tag"] {
		if tag == "" {
			return q, &registry.FieldError{Field: "tag", Message: "must not be empty"}
		}
		q.Tags = append(q.Tags, tag)
	}
	for _, m := range params["meta"] {
		key, value, ok := strings.Cut(m, ":")
		if !ok || key == "" {
			return q, &registry.FieldError{Field: "meta", Message: fmt.Sprintf("%q must be key:value", m)}
		}
		q.Meta = append(q.Meta, view.MetaMatch{Key: key, Value: value})
	}
	status, err := view.ParseStatusFilter(params.Get("status"))
	if err != nil {
		return q, &registry.FieldError{Field: "status", Message: err.Error()}
	}
	q.Status = status
	return q, nil
}

// blocking is the ?index=N&wait=D of a blocking query.
type blocking struct {
	on    bool
	index uint64
	wait  time.Duration
}

// parseBlocking reads index and wait. A query blocks only with an index;
// wait defaults to DefaultWait and is capped at MaxWait. A bare number of
// wait is seconds.
func parseBlocking(params url.Values) (blocking, error) {
	b := blocking{wait: DefaultWait}
	if params.Has("wait") {
		wait, err := parseWait(params.Get("wait"))
		if err != nil {
			return b, err
		}
		b.wait = min(wait, MaxWait)
	}
	if !params.Has("index") {
		return b, nil
	}
	index, err := strconv.ParseUint(params.Get("index"), 10, 64)
	if err != nil {
		return b, &registry.FieldError{Field: "index", Message: fmt.Sprintf("%q must be a whole number ≥ 0", params.Get("index"))}
	}
	b.on, b.index = true, index
	return b, nil
}

func parseWait(s string) (time.Duration, error) {
	d, err := registry.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, &registry.FieldError{Field: "wait", Message: fmt.Sprintf("%q must be a positive duration such as 30s, 5m or 60 (seconds)", s)}
	}
	return d, nil
}

// block runs wait for at most b.wait. A client that goes away ends it.
func (a *API) block(w http.ResponseWriter, r *http.Request, b blocking, wait func(context.Context)) error {
	// Nothing is written while waiting; the answer's write deadline starts
	// once the wait is over. Writers that cannot (a test recorder) need not.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	wait(ctx)
	a.extendWriteDeadline(rc)
	return r.Context().Err()
}
