package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/registry"
)

// Error codes of SPEC §2, and the one the SPEC leaves open (405).
const (
	codeInvalidArgument  = "invalid_argument"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codePayloadTooLarge  = "payload_too_large"
	codeUnavailable      = "unavailable"
	codeRateLimited      = "rate_limited"
	codeUnauthenticated  = "unauthenticated"
	codePermissionDenied = "permission_denied"
	codeInternal         = "internal"
)

// apiError is an error the API raises itself with a fixed status.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

var (
	errNoRoute          = &apiError{http.StatusNotFound, codeNotFound, "no such route"}
	errMethodNotAllowed = &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed on this route"}
)

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// writeError is the one place where errors become statuses. Only errors the
// API or its input caused are described to the client; anything else is
// logged and answered with a bare 500.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client has gone; nobody reads an answer
	}
	status, detail := a.classify(r, err)
	if rec := recorderOf(r); rec != nil {
		rec.errCode = detail.Code
	}
	var limited *limitError
	if errors.As(err, &limited) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(limited.retryAfter)))
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	if d, ok := auth.IsDenial(err); ok {
		a.denials.WithLabelValues(d.Reason).Inc()
		if !d.Forbidden {
			w.Header().Set("WWW-Authenticate", `Bearer realm="saga"`)
		}
	}
	writeJSON(w, status, errorBody{Error: detail})
}

func (a *API) classify(r *http.Request, err error) (int, errorDetail) {
	var (
		own     *apiError
		denial  *auth.Denial
		tooBig  *http.MaxBytesError
		invalid *registry.FieldError
	)
	switch {
	case errors.As(err, &denial):
		if denial.Forbidden {
			return http.StatusForbidden, errorDetail{Code: codePermissionDenied, Message: denial.Message}
		}
		return http.StatusUnauthorized, errorDetail{Code: codeUnauthenticated, Message: denial.Message}
	case errors.Is(err, auth.ErrTokenNotFound):
		return http.StatusNotFound, errorDetail{Code: codeNotFound, Message: "no token has this accessor"}
	case errors.Is(err, auth.ErrBootstrapped):
		return http.StatusForbidden, errorDetail{Code: codePermissionDenied, Message: "tokens already exist, so bootstrap is done; ask an admin for a token"}
	case errors.As(err, &own):
		return own.status, errorDetail{Code: own.code, Message: own.message}
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, errorDetail{
			Code:    codePayloadTooLarge,
			Message: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit),
			Field:   "body",
		}
	case errors.As(err, &invalid):
		return http.StatusBadRequest, errorDetail{Code: codeInvalidArgument, Message: invalid.Error(), Field: invalid.Field}
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, errorDetail{Code: codeNotFound, Message: err.Error()}
	case errors.Is(err, registry.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		// A store that does not answer in time is as good as unreachable.
		a.logger.Warn("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		return http.StatusServiceUnavailable, errorDetail{Code: codeUnavailable, Message: "the registry's store is unavailable; try again"}
	default:
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return http.StatusInternalServerError, errorDetail{Code: codeInternal, Message: "internal error"}
	}
}

// writeJSON answers with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, status, jsonBody(v))
}

// jsonBody encodes one of the API's own answers, and a newline.
func jsonBody(v any) []byte {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the API's own answer types reach here; they always encode.
		panic(fmt.Sprintf("httpapi: encode %T: %v", v, err))
	}
	return append(body, '\n')
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client has gone
}
