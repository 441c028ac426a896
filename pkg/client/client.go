package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAddr is where a Saga server listens unless told otherwise.
const DefaultAddr = "http://127.0.0.1:8030"

// maxResponseBytes bounds how much of an answer the client reads, so a
// misbehaving peer cannot exhaust memory.
const maxResponseBytes = 64 << 20

// Client talks to one Saga server. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	token     string      // sent as "Authorization: Bearer <token>" when set
	tlsConfig *tls.Config // for the default transport
}

// Option changes how New builds a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc, e.g. for
// TLS settings or a custom transport. hc should have no overall Timeout:
// blocking queries and the event stream stay open for minutes, and contexts
// bound every call instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithToken sends secret as "Authorization: Bearer <secret>" with every
// request: calls, blocking queries, the event stream and KeepAlive's
// heartbeats alike.
func WithToken(secret string) Option {
	return func(c *Client) { c.token = secret }
}

// WithTLS makes the default transport use config for https:// servers: the
// CAs to trust and a client certificate for mTLS (see package tlsfiles for
// one read from files). It has no effect together with WithHTTPClient,
// whose transport carries its own TLS settings.
func WithTLS(config *tls.Config) Option {
	return func(c *Client) { c.tlsConfig = config }
}

// New returns a client for the server at addr: a URL such as
// "http://127.0.0.1:8030", or a bare "host:port" (taken as http).
func New(addr string, opts ...Option) (*Client, error) {
	base, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{base: base}
	for _, opt := range opts {
		opt(c)
	}
	// Checked here rather than failing every request; the message must
	// not quote the secret.
	if strings.ContainsFunc(c.token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("token: must not hold spaces, line breaks or control characters")
	}
	if c.http == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		// Keep-alive connections for every concurrent caller, not just two.
		transport.MaxIdleConnsPerHost = 64
		transport.TLSClientConfig = c.tlsConfig
		c.http = &http.Client{Transport: transport}
	}
	return c, nil
}

// ParseAddr turns a server address into the base URL of its API: a bare
// "host:port" becomes "http://host:port"; a trailing slash is dropped.
func ParseAddr(addr string) (*url.URL, error) {
	raw := strings.TrimSpace(addr)
	if raw == "" {
		return nil, fmt.Errorf("server: must not be empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("server: %q is not a valid address: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server: %q: scheme must be http or https", addr)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("server: %q has no host", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server: %q must not have a query or fragment", addr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Addr is the server's base URL, as used in messages.
func (c *Client) Addr() string { return c.base.String() }

// reply is a raw answer: its status, headers and body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// roundTrip sends one request and reads the whole answer, whatever its
// status. in, when not nil, is sent as the JSON body.
func (c *Client) roundTrip(ctx context.Context, method, path string, query url.Values, in any) (reply, error) {
	req, err := c.newRequest(ctx, method, path, query, in)
	if err != nil {
		return reply{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return reply{}, c.transportError(ctx, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// call sends one request and decodes a 2xx answer into out (when not nil).
// Any other status becomes an *Error.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) (reply, error) {
	r, err := c.roundTrip(ctx, method, path, query, in)
	if err != nil {
		return r, err
	}
	if r.status < 200 || r.status > 299 {
		return r, decodeError(r.status, r.header, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			return r, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return r, nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, in any) (*http.Request, error) {
	u := *c.base
	// path is escaped already (servicePath): keep that form, so that an
	// escaped "/" stays one path segment instead of being escaped again.
	u.RawPath = c.base.EscapedPath() + path
	unescaped, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	u.Path = unescaped
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// transportError explains a failed exchange: the caller's cancellation as
// it is, a deadline that passed with the server's address, anything else
// as an unreachable server.
func (c *Client) transportError(ctx context.Context, err error) error {
	switch ctxErr := ctx.Err(); {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return fmt.Errorf("no answer from saga at %s in time: %w", c.Addr(), ctxErr)
	case ctxErr != nil:
		return ctxErr
	}
	return &UnreachableError{Addr: c.Addr(), Err: err}
}

// servicePath is the path of a service, escaped.
func servicePath(service string) string {
	return "/api/v1/services/" + url.PathEscape(service)
}

// instancePath is the path of one instance, escaped.
func instancePath(service, id string) string {
	return servicePath(service) + "/instances/" + url.PathEscape(id)
}

// blockingQuery adds index and wait to a query when a blocking query is
// asked for: an index, or a wait. A wait sends index 0 too, since that is
// the index of a service not known yet, and the server then waits for it
// to appear rather than answer at once.
func blockingQuery(q url.Values, index uint64, wait time.Duration) {
	if index > 0 || wait > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
	}
	if wait > 0 {
		q.Set("wait", formatWait(wait))
	}
}

// formatWait writes a duration the server parses: whole seconds as "30s",
// anything finer in milliseconds.
func formatWait(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(max(int64(d/time.Millisecond), 1), 10) + "ms"
}

// indexOf reads the X-Saga-Index header, for answers whose body has no index.
func indexOf(h http.Header) uint64 {
	n, _ := strconv.ParseUint(h.Get("X-Saga-Index"), 10, 64)
	return n
}
