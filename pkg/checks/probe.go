package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sagaproject/saga/pkg/registry"
)

// result is what one probe found.
type result struct {
	status  registry.Status
	output  string
	elapsed time.Duration
}

// prober runs probes. Its dialer refuses link-local and metadata addresses
// after DNS resolution, so a name that resolves there is refused too; it
// uses no proxy and follows no redirect, so a check reaches only the
// address it names.
type prober struct {
	dialer         *net.Dialer
	client, noVerf *http.Client
}

func newProber() *prober {
	d := &net.Dialer{Control: refuseForbidden}
	transport := func(skipVerify bool) *http.Client {
		return &http.Client{
			Transport: &http.Transport{
				Proxy:           nil,
				DialContext:     d.DialContext,
				TLSClientConfig: &tls.Config{InsecureSkipVerify: skipVerify, MinVersion: tls.VersionTLS12}, //nolint:gosec // only when the check asks for it
				// Keep connections for reuse, within a bound on memory: a
				// dial costs a probe several times its request. Many checks
				// may aim at one host:port (instances behind one address),
				// so that host keeps more than Go's default of 2.
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &prober{dialer: d, client: transport(false), noVerf: transport(true)}
}

// refuseForbidden is the dialer's Control: it sees the address after
// resolution, just before the connection is made.
func refuseForbidden(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || registry.ForbiddenCheckIP(ip) {
		return errForbidden
	}
	return nil
}

// bodyPeek is how much of an HTTP answer is read for the output; the rest
// is left unread.
const bodyPeek = 4 << 10

func (p *prober) probe(ctx context.Context, def registry.Check, target string, timeout time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var res result
	if def.HTTP != "" {
		res = p.http(ctx, def, target)
	} else {
		res = p.tcp(ctx, target)
	}
	res.elapsed = time.Since(start)
	res.output = shorten(res.output)
	return res
}

func (p *prober) http(ctx context.Context, def registry.Check, url string) result {
	req, err := http.NewRequestWithContext(ctx, def.Method, url, nil)
	if err != nil {
		return result{status: registry.StatusCritical, output: err.Error()}
	}
	req.Header.Set("User-Agent", "Saga Health Check")
	for k, v := range def.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	client := p.client
	if def.TLSSkipVerify {
		client = p.noVerf
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{status: registry.StatusCritical, output: fmt.Sprintf("HTTP %s %s: %v", def.Method, url, unwrapURL(err))}
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, bodyPeek))
	status := registry.StatusCritical
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		status = registry.StatusPassing
	case resp.StatusCode == http.StatusTooManyRequests:
		status = registry.StatusWarning
	}
	out := fmt.Sprintf("HTTP %s %s: %s", def.Method, url, resp.Status)
	if b := strings.TrimSpace(string(body)); b != "" {
		out += ": " + b
	}
	return result{status: status, output: out}
}

// unwrapURL drops the *url.Error wrapping, which repeats the method and URL.
func unwrapURL(err error) error {
	if u, ok := errors.AsType[*url.Error](err); ok {
		return u.Err
	}
	return err
}

func (p *prober) tcp(ctx context.Context, hostport string) result {
	conn, err := p.dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return result{status: registry.StatusCritical, output: fmt.Sprintf("TCP connect %s: %v", hostport, err)}
	}
	_ = conn.Close() // the connection was made; closing it tells nothing more
	return result{status: registry.StatusPassing, output: fmt.Sprintf("TCP connect %s: success", hostport)}
}

// shorten keeps an output within registry.MaxCheckOutputBytes of valid
// UTF-8 text on one line.
func shorten(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= registry.MaxCheckOutputBytes {
		return s
	}
	cut := registry.MaxCheckOutputBytes - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
