package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sagaproject/saga/pkg/auth"
)

// The audit log (SPEC §6): one line for every write and every token
// change, naming who (the token's accessor and the client's address), what
// (method, route, service, instance or token) and the outcome.

type auditKey struct{}

// auditNote carries what a handler learns that the audit line needs: the
// id it generated, or the token it changed.
type auditNote struct {
	kind, id string // kind: "instance" or "token"
}

// noteAudit records, for the audit line, the instance or token a request
// acted on.
func noteAudit(r *http.Request, kind, id string) {
	if n, ok := r.Context().Value(auditKey{}).(*auditNote); ok {
		n.kind, n.id = kind, id
	}
}

// audited writes the audit line of every request to the route, after it
// is answered.
func (a *API) audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note := &auditNote{kind: "instance", id: chi.URLParam(r, "id")}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), auditKey{}, note)))
		status, code := http.StatusOK, ""
		if rec := recorderOf(r); rec != nil {
			status, code = rec.status, rec.errCode
		}

		accessor := "-"
		if tok, ok := auth.TokenFrom(r.Context()); ok {
			accessor = tok.Accessor
		}
		outcome := "ok"
		if code != "" {
			outcome = code
		}
		attrs := []slog.Attr{
			slog.String("accessor", accessor),
			slog.String("client", remoteIP(r)),
			slog.String("method", r.Method),
			slog.String("route", routePattern(r)),
		}
		if service := chi.URLParam(r, "service"); service != "" {
			attrs = append(attrs, slog.String("service", service))
		}
		if note.id != "" {
			attrs = append(attrs, slog.String(note.kind, note.id))
		}
		attrs = append(attrs, slog.String("outcome", outcome), slog.Int("status", status))
		a.audit.Load().LogAttrs(r.Context(), slog.LevelInfo, "audit", attrs...)
	})
}

func routePattern(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
		return rctx.RoutePattern()
	}
	return r.URL.Path
}
