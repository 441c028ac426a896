package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
	"github.com/sagaproject/saga/pkg/registry"
)

// recorder is a proxy in front of a test server that keeps every request
// the CLI sends, with its body.
type recorder struct {
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path string
	body         []byte
}

// recordedCLI is a client CLI whose requests pass through a recorder.
func recordedCLI(t *testing.T) (*clientCLI, *recorder) {
	t.Helper()
	cli := newClientCLI(t)
	backend, err := url.Parse(cli.addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(backend)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.requests = append(rec.requests, recorded{r.Method, r.URL.Path, body})
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cli.addr = srv.URL
	return cli, rec
}

// take returns the requests recorded since the last call.
func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.requests
	r.requests = nil
	return out
}

// healthTarget is an HTTP server for checks to probe, on loopback: its
// address and port.
func healthTarget(t *testing.T) (string, int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	return host, n
}

// Check flags that cannot make a valid request are refused by the CLI in
// one line naming the flag, and nothing reaches the server.
func TestRegisterCheckFlagsRefusedLocally(t *testing.T) {
	cli, rec := recordedCLI(t)
	base := []string{"register", "web", "--address", "10.0.0.5", "--port", "8080"}
	tests := []struct {
		flags []string
		want  string
	}{
		{[]string{"--check-interval", "10s"}, "--check-interval and --check-timeout need --check-http or --check-tcp"},
		{[]string{"--check-timeout", "2s"}, "need --check-http or --check-tcp"},
		{[]string{"--check-http", "/healthz", "--check-interval", "often"}, `check-interval: "often": not a duration`},
		{[]string{"--check-tcp", ":5432", "--check-timeout", "-2s"}, `check-timeout: "-2s": not a duration`},
		{[]string{"--check-http"}, "flag needs an argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			out, errOut, code := cli.run(append(base, tt.flags...)...)
			if code == 0 || out != "" {
				t.Errorf("exit %d, stdout %q; want a failure and nothing printed", code, out)
			}
			if !strings.Contains(errOut, tt.want) || !strings.HasPrefix(errOut, "saga: ") {
				t.Errorf("stderr %q, want a line starting saga: with %q", errOut, tt.want)
			}
			if first, _, _ := strings.Cut(errOut, "\n"); first == "" || hasTerminalControl(first) {
				t.Errorf("stderr %q: the first line should say it all, readably", errOut)
			}
			if sent := rec.take(); len(sent) != 0 {
				t.Errorf("%d requests reached the server: %+v", len(sent), sent)
			}
		})
	}
}

// What only the server can judge (targets, ranges) comes back as one line
// naming the check's field, and nothing is registered.
func TestRegisterCheckRefusedByServer(t *testing.T) {
	cli, rec := recordedCLI(t)
	tests := []struct {
		flags []string
		want  string
	}{
		{[]string{"--check-tcp", "example.com:22"}, `checks[0].tcp: "example.com" is not the instance's address`},
		{[]string{"--check-http", "http://169.254.169.254/latest/meta-data/"}, "checks[0].http: "},
		{[]string{"--check-http", "/healthz", "--check-timeout", "20s"}, "checks[0].timeout: 20s must be above 0 and at most the interval (10s)"},
		{[]string{"--check-http", "/healthz", "--check-interval", "100ms"}, "checks[0].interval: "},
		{[]string{"--check-tcp", ":5432", "--ttl", "5s"}, "ttl_seconds: 5 is below 10"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			args := append([]string{"register", "web", "--address", "10.0.0.5", "--port", "8080"}, tt.flags...)
			out, errOut, code := cli.run(args...)
			if code == 0 || out != "" {
				t.Errorf("exit %d, stdout %q; want a failure and nothing printed", code, out)
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", errOut, tt.want)
			}
			rec.take()
		})
	}
	res, err := cli.api.Lookup(t.Context(), "web", client.LookupOptions{Status: client.StatusAny})
	if err != nil || len(res.Instances) != 0 {
		t.Errorf("after refusals, web has %v (%v), want no instance", res.Instances, err)
	}
}

// The flags become the checks of the registration body, as given: the
// server fills in the defaults.
func TestRegisterCheckRequestBody(t *testing.T) {
	cli, rec := recordedCLI(t)
	host, port := healthTarget(t)
	tests := []struct {
		flags []string
		want  []map[string]any
	}{
		{nil, nil},
		{[]string{"--check-http", "/healthz"}, []map[string]any{{"http": "/healthz"}}},
		{[]string{"--check-tcp", ":" + strconv.Itoa(port), "--check-timeout", "2s"},
			[]map[string]any{{"tcp": ":" + strconv.Itoa(port), "timeout": "2s"}}},
		{[]string{"--check-http", "/healthz", "--check-tcp", ":" + strconv.Itoa(port), "--check-interval", "5s", "--check-timeout", "1s"},
			[]map[string]any{
				{"http": "/healthz", "interval": "5s", "timeout": "1s"},
				{"tcp": ":" + strconv.Itoa(port), "interval": "5s", "timeout": "1s"},
			}},
	}
	for i, tt := range tests {
		args := append([]string{"register", "web", "--id", "w" + strconv.Itoa(i), "--address", host, "--port", strconv.Itoa(port)}, tt.flags...)
		out := cli.mustRun(args...)
		sent := rec.take()
		if len(sent) != 1 || sent[0].method != http.MethodPost || sent[0].path != "/api/v1/services/web/instances" {
			t.Fatalf("%v: sent %+v, want one POST to /api/v1/services/web/instances", tt.flags, sent)
		}
		var body struct {
			Checks []map[string]any `json:"checks"`
		}
		if err := json.Unmarshal(sent[0].body, &body); err != nil {
			t.Fatalf("%v: body %s: %v", tt.flags, sent[0].body, err)
		}
		if !reflect.DeepEqual(body.Checks, tt.want) {
			t.Errorf("%v: checks sent %v, want %v", tt.flags, body.Checks, tt.want)
		}
		// The registration's answer shows its checks, not yet run.
		if hasChecks := strings.Contains(out, "CHECKS"); hasChecks != (tt.want != nil) {
			t.Errorf("%v: CHECKS column shown %t, want %t:\n%s", tt.flags, hasChecks, tt.want != nil, out)
		}
	}

	// The stored checks carry the server's defaults.
	in, err := cli.api.Instance(t.Context(), "web", "w1")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Checks) != 1 || in.Checks[0].Interval != "10s" || in.Checks[0].Timeout != "5s" || in.Checks[0].Method != "GET" {
		t.Errorf("stored checks %+v, want the defaults filled in", in.Checks)
	}
}

// lookup has a CHECKS column only when an instance has checks, and it
// follows their status.
func TestLookupChecksColumn(t *testing.T) {
	cli := newClientCLI(t)
	host, port := healthTarget(t)
	p := strconv.Itoa(port)

	cli.mustRun("register", "plain", "--id", "p1", "--address", "10.0.0.5", "--port", "8080")
	if out := cli.mustRun("lookup", "plain"); strings.Contains(out, "CHECKS") {
		t.Errorf("lookup of a service without checks shows a CHECKS column:\n%s", out)
	}

	cli.mustRun("register", "web", "--id", "plain", "--address", "10.0.0.5", "--port", "8080")
	cli.mustRun("register", "web", "--id", "checked", "--address", host, "--port", p,
		"--check-http", "/healthz", "--check-tcp", ":"+p, "--check-interval", "1s")
	want := "http /healthz=passing,tcp :" + p + "=passing"
	deadline := time.Now().Add(10 * time.Second)
	var out string
	// The checks' results show first; the instance turns passing when the
	// checker's status write lands, a moment later.
	checkedPassing := func(out string) bool {
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); len(f) > 4 && f[1] == "checked" {
				return f[4] == "passing" && strings.HasSuffix(strings.TrimSpace(line), want)
			}
		}
		return false
	}
	for {
		out = cli.mustRun("lookup", "web", "--status", "any")
		if checkedPassing(out) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "CHECKS") {
		t.Fatalf("lookup printed:\n%s\nwant a header ending in CHECKS and two rows", out)
	}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		switch fields[1] {
		case "plain":
			if last := fields[len(fields)-1]; last != "-" {
				t.Errorf("the instance without checks shows %q in CHECKS, want -", last)
			}
		case "checked":
			if !strings.HasSuffix(line, want) || fields[4] != "passing" {
				t.Errorf("the checked instance's row is %q, want it passing and ending in %q", line, want)
			}
		}
	}
}

// A check stored by an earlier release, or sent by a server of another
// version, may carry control characters in its target: the CHECKS column
// escapes them like every other cell.
func TestLookupChecksColumnEscapes(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	api, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cli := &clientCLI{t: t, addr: srv.URL, api: api}

	target := "/h\x1b[2J\nweb      evil   6.6.6.6"
	reg := registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80, Checks: []registry.Check{{HTTP: target}}}
	if _, err := api.Register(t.Context(), "web", reg); err == nil {
		t.Fatal("the API accepted a check target with control characters")
	}
	ev, err := srv.Store.Register(t.Context(), registry.NewInstance("web", reg, time.Now(), time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv.View.Apply(ev)

	out := cli.mustRun("lookup", "web", "--status", "any")
	if hasTerminalControl(out) {
		t.Errorf("lookup printed raw control characters:\n%q", out)
	}
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Errorf("lookup printed %d lines, want a header and one row:\n%s", lines, out)
	}
	if want := `http /h\x1b[2J\nweb      evil   6.6.6.6=`; !strings.Contains(out, want) {
		t.Errorf("lookup output lacks %s:\n%s", want, out)
	}
}
