package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/registry"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  string
	}{
		{in: "127.0.0.1:8030", want: "http://127.0.0.1:8030"},
		{in: "http://127.0.0.1:8030/", want: "http://127.0.0.1:8030"},
		{in: "https://saga.example.com", want: "https://saga.example.com"},
		{in: "http://[::1]:8030", want: "http://[::1]:8030"},
		{in: "http://proxy.example.com/saga/", want: "http://proxy.example.com/saga"},
		{in: "", wantErr: "server: must not be empty"},
		{in: "ftp://host:21", wantErr: "scheme must be http or https"},
		{in: "http://", wantErr: "has no host"},
		{in: "http://host:8030?x=1", wantErr: "must not have a query"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddr(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.in, err)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("ParseAddr(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeError(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		want    Error
		message string
	}{
		{
			name:    "field error",
			status:  400,
			body:    `{"error":{"code":"invalid_argument","message":"70000 is out of range 1-65535","field":"port"}}`,
			want:    Error{Status: 400, Code: "invalid_argument", Message: "70000 is out of range 1-65535", Field: "port"},
			message: "port: 70000 is out of range 1-65535 (invalid_argument)",
		},
		{
			name:    "message already names the field",
			status:  400,
			body:    `{"error":{"code":"invalid_argument","message":"port: 70000 is out of range 1-65535","field":"port"}}`,
			want:    Error{Status: 400, Code: "invalid_argument", Message: "port: 70000 is out of range 1-65535", Field: "port"},
			message: "port: 70000 is out of range 1-65535 (invalid_argument)",
		},
		{
			name:    "not saga's json",
			status:  502,
			body:    "<html>\n Bad   Gateway </html>",
			want:    Error{Status: 502, Code: "internal", Message: "<html> Bad Gateway </html>"},
			message: "<html> Bad Gateway </html> (internal)",
		},
		{
			name:    "no token",
			status:  401,
			body:    `{"error":{"code":"unauthenticated","message":"this request needs a token: send Authorization: Bearer saga_…"}}`,
			want:    Error{Status: 401, Code: "unauthenticated", Message: "this request needs a token: send Authorization: Bearer saga_…"},
			message: "this request needs a token: send Authorization: Bearer saga_… (unauthenticated)",
		},
		{
			name:    "outside the scope",
			status:  403,
			body:    `{"error":{"code":"permission_denied","message":"this token's service scope does not include \"db\""}}`,
			want:    Error{Status: 403, Code: "permission_denied", Message: `this token's service scope does not include "db"`},
			message: `this token's service scope does not include "db" (permission_denied)`,
		},
		{
			name:    "proxy's 401",
			status:  401,
			want:    Error{Status: 401, Code: "unauthenticated", Message: "Unauthorized"},
			message: "Unauthorized (unauthenticated)",
		},
		{
			name:    "rate limited",
			status:  429,
			header:  http.Header{"Retry-After": {"3"}},
			body:    `{"error":{"code":"rate_limited","message":"too many write requests"}}`,
			want:    Error{Status: 429, Code: "rate_limited", Message: "too many write requests", RetryAfter: 3 * time.Second},
			message: "too many write requests (rate_limited); retry after 3s",
		},
		{
			name:    "empty body",
			status:  404,
			want:    Error{Status: 404, Code: "not_found", Message: "Not Found"},
			message: "Not Found (not_found)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeError(tt.status, tt.header, []byte(tt.body))
			if *got != tt.want {
				t.Errorf("decodeError = %+v, want %+v", *got, tt.want)
			}
			if got.Error() != tt.message {
				t.Errorf("Error() = %q, want %q", got.Error(), tt.message)
			}
		})
	}
}

func TestErrorMatchesSentinels(t *testing.T) {
	var err error = &Error{Status: 404, Code: CodeNotFound, Message: "no such instance"}
	if !errors.Is(err, registry.ErrNotFound) {
		t.Error("a not_found error does not match registry.ErrNotFound")
	}
	if errors.Is(err, registry.ErrUnavailable) {
		t.Error("a not_found error matches registry.ErrUnavailable")
	}
	unavailable := &Error{Status: 503, Code: CodeUnavailable}
	if !errors.Is(unavailable, registry.ErrUnavailable) {
		t.Error("an unavailable error does not match registry.ErrUnavailable")
	}
	if !unavailable.Temporary() {
		t.Error("an unavailable error is not temporary")
	}
}

func TestUnreachableServer(t *testing.T) {
	addr := asynctest.FreeAddr(t)
	c, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Services(context.Background(), QueryOptions{})
	var unreachable *UnreachableError
	if !errors.As(err, &unreachable) {
		t.Fatalf("Services error = %#v, want *UnreachableError", err)
	}
	want := "cannot reach saga at http://" + addr + ": connection refused"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("error does not match syscall.ECONNREFUSED")
	}
}

func TestCanceledCallReturnsContextError(t *testing.T) {
	c, err := New(asynctest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Lookup(ctx, "web", LookupOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup with a canceled context = %v, want context.Canceled", err)
	}
}

func TestDeadlineNamesTheServer(t *testing.T) {
	// A listener that accepts but never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer from saga at http://"+ln.Addr().String()) {
		t.Errorf("Health past its deadline = %v", err)
	}
}
