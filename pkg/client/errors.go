package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Error codes of the API (SPEC §2).
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeNotFound         = "not_found"
	CodePayloadTooLarge  = "payload_too_large"
	CodeUnauthenticated  = "unauthenticated"
	CodePermissionDenied = "permission_denied"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

// Error is an error answer of the API:
// {"error":{"code":"…","message":"…","field":"…"}}.
type Error struct {
	Status  int    // HTTP status
	Code    string // e.g. "invalid_argument"
	Message string
	Field   string // the request field at fault, when there is one
	// RetryAfter is how long the server asked the client to wait before
	// trying again (Retry-After, with rate_limited and unavailable).
	RetryAfter time.Duration
}

// Error reads like "port: 70000 is out of range 1-65535 (invalid_argument)",
// or "too many requests (rate_limited); retry after 2s".
func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" && !strings.HasPrefix(msg, e.Field+":") && !strings.HasPrefix(msg, e.Field+" ") {
		msg = e.Field + ": " + msg
	}
	msg = fmt.Sprintf("%s (%s)", msg, e.Code)
	if e.Code == CodeRateLimited && e.RetryAfter > 0 {
		msg += "; retry after " + e.RetryAfter.String()
	}
	return msg
}

// Is relates API codes to the registry's sentinel errors, so callers can
// write errors.Is(err, registry.ErrNotFound).
func (e *Error) Is(target error) bool {
	switch target {
	case registry.ErrNotFound:
		return e.Code == CodeNotFound
	case registry.ErrUnavailable:
		return e.Code == CodeUnavailable
	}
	return false
}

// Temporary reports whether the same request may succeed later: the server
// is overloaded, cut off from its store, or failed internally.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// decodeError builds the *Error of a non-2xx answer, also from a body that
// is not Saga's JSON (a proxy's error page, say).
func decodeError(status int, header http.Header, body []byte) *Error {
	e := decodeErrorBody(status, body)
	// Retry-After in seconds, as Saga sends it; an HTTP date is rare
	// enough from a proxy to leave out.
	if secs, err := strconv.Atoi(header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

func decodeErrorBody(status int, body []byte) *Error {
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &wire); err == nil && wire.Error.Code != "" {
		return &Error{Status: status, Code: wire.Error.Code, Message: wire.Error.Message, Field: wire.Error.Field}
	}
	msg := strings.Join(strings.Fields(string(body)), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &Error{Status: status, Code: codeForStatus(status), Message: msg}
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidArgument
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusRequestEntityTooLarge:
		return CodePayloadTooLarge
	case http.StatusUnauthorized:
		return CodeUnauthenticated
	case http.StatusForbidden:
		return CodePermissionDenied
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	if status >= 500 {
		return CodeInternal
	}
	return fmt.Sprintf("http_%d", status)
}

// UnreachableError means no answer came from the server: nothing listens,
// the name does not resolve, the connection broke.
type UnreachableError struct {
	Addr string // the server's base URL
	Err  error
}

// Error reads like "cannot reach saga at http://127.0.0.1:8030: connection refused".
func (e *UnreachableError) Error() string {
	return "cannot reach saga at " + e.Addr + ": " + reason(e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// reason is the innermost useful part of a network error: "connection
// refused" rather than `Get "http://…": dial tcp …: connect: connection refused`.
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		return urlErr.Err.Error()
	}
	return err.Error()
}
