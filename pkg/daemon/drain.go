package daemon

import (
	"context"
	"net/http"
	"sync"
)

// drainer ends the requests that would otherwise never finish on their own
// within a drain: blocking queries (?index=) and event streams. Ordinary
// requests are left to complete.
type drainer struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newDrainer() *drainer {
	ctx, cancel := context.WithCancel(context.Background())
	return &drainer{ctx: ctx, cancel: cancel}
}

// close ends every long-lived request, now and from now on.
func (d *drainer) close() { d.cancel() }

func longLived(r *http.Request) bool {
	return r.URL.Path == "/api/v1/events" || r.URL.Query().Has("index")
}

// wrap gives long-lived requests a context that close cancels. A blocking
// query cut short that way, having written nothing, is answered 503 so its
// client retries rather than reading an empty body.
func (d *drainer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !longLived(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(d.ctx, cancel)
		defer stop()
		tw := &trackingWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r.WithContext(ctx))
		if !tw.wrote() && d.ctx.Err() != nil && r.Context().Err() == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"saga is shutting down"}}` + "\n"))
		}
	})
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

// Flush and Unwrap keep streaming (http.Flusher, http.ResponseController)
// working through the wrapper.
func (w *trackingWriter) Flush() {
	w.mark()
	http.NewResponseController(w.ResponseWriter).Flush() //nolint:errcheck // a stream that cannot flush fails on its next write
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
