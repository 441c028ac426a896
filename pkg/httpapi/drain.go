package httpapi

import (
	"context"
	"errors"
	"net/http"
	"sync"
)

// Blocking queries and event streams never finish by themselves, so a
// server that drains ends them: EndLongLived cancels them now and any that
// start later, and ordinary requests are left to complete.

// errShuttingDown answers a blocking query cut short by a drain before it
// wrote anything, so that its client asks again rather than reading an
// empty body.
var errShuttingDown = &apiError{http.StatusServiceUnavailable, codeUnavailable, "saga is shutting down; ask again"}

// EndLongLived ends every blocking query and event stream, now and from now
// on. Call it when the server starts to drain.
func (a *API) EndLongLived() { a.endLongLive() }

// longLived gives the requests of a long-lived route a context that
// EndLongLived cancels; for the reads that block only with ?index=, only
// those.
func (a *API) longLived(blockingOnly bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if blockingOnly && !r.URL.Query().Has("index") {
				next.ServeHTTP(w, r)
				return
			}
			// Each one holds a goroutine and a connection for minutes, so
			// they are capped per client and in total (SPEC §6).
			release, err := a.admitLongLived(r, !blockingOnly)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			defer release()
			ctx, cancel := context.WithCancelCause(r.Context())
			defer cancel(nil)
			stop := context.AfterFunc(a.draining, func() { cancel(errShuttingDown) })
			defer stop()
			stopGuard := a.guardAccess(ctx, r, accessRead, cancel)
			defer stopGuard()
			tw := &trackingWriter{ResponseWriter: w}
			next.ServeHTTP(tw, r.WithContext(ctx))
			if !tw.wrote() && r.Context().Err() == nil {
				if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
					a.writeError(w, r, err) // the denial, or 503 with Retry-After while draining
				}
			}
		})
	}
}

// trackingWriter notes whether a handler has started its answer.
type trackingWriter struct {
	http.ResponseWriter
	mu      sync.Mutex
	started bool
}

func (w *trackingWriter) mark() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
}

func (w *trackingWriter) wrote() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

func (w *trackingWriter) WriteHeader(code int) {
	w.mark()
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
