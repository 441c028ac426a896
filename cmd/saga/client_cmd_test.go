package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
	"github.com/sagaproject/saga/pkg/registry"
)

// The client commands run in-process through run(), against the real API,
// store and view on a loopback port.

// clientCLI runs saga commands with SAGA_ADDR pointing at a test server.
type clientCLI struct {
	t    *testing.T
	addr string
	api  *client.Client
}

func newClientCLI(t *testing.T) *clientCLI {
	t.Helper()
	srv := clienttest.Start(t, clienttest.Options{})
	api, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &clientCLI{t: t, addr: srv.URL, api: api}
}

// waitForOutput waits until a running command's output holds want, or
// fails the test.
func waitForOutput(t *testing.T, out *asynctest.LogBuffer, want string) {
	t.Helper()
	if err := out.Wait(10*time.Second, nil, func(text string) bool { return strings.Contains(text, want) }); err != nil {
		t.Fatalf("output never contained %q (%v); it is:\n%s", want, err, out.String())
	}
}

func (c *clientCLI) getenv(key string) string {
	if key == "SAGA_ADDR" {
		return c.addr
	}
	return ""
}

// run runs one command to completion.
func (c *clientCLI) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	code = run(c.t.Context(), args, c.getenv, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// start runs a long-running command until the returned stop is called,
// which returns its exit status.
func (c *clientCLI) start(args ...string) (stdout, stderr *asynctest.LogBuffer, stop func() int) {
	ctx, cancel := context.WithCancel(c.t.Context())
	stdout, stderr = &asynctest.LogBuffer{}, &asynctest.LogBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, c.getenv, strings.NewReader(""), stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}
	c.t.Cleanup(func() { stop() })
	return stdout, stderr, stop
}

// mustRun runs a command that must succeed.
func (c *clientCLI) mustRun(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("saga %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestClientCommands(t *testing.T) {
	cli := newClientCLI(t)

	out := cli.mustRun("register", "web", "--id", "web-1", "--address", "10.0.0.5", "--port", "8080",
		"--tag", "v2", "--tag", "http", "--meta", "zone=eu-1", "--ttl", "2m")
	for _, want := range []string{"SERVICE", "web-1", "10.0.0.5", "8080", "passing", "v2,http", "zone=eu-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("register output lacks %q:\n%s", want, out)
		}
	}

	var registered struct {
		registry.Instance
		HeartbeatIntervalSeconds float64 `json:"heartbeat_interval_seconds"`
		Created                  bool    `json:"created"`
	}
	out = cli.mustRun("register", "web", "--address", "web-2.example.com", "--port", "8080", "--ttl", "60", "-o", "json")
	if err := json.Unmarshal([]byte(out), &registered); err != nil {
		t.Fatalf("register -o json: %v\n%s", err, out)
	}
	if registered.ID == "" || !registered.Created || registered.TTLSeconds != 60 || registered.HeartbeatIntervalSeconds <= 0 {
		t.Errorf("register -o json = %+v", registered)
	}
	other := registered.ID

	out = cli.mustRun("heartbeat", "web", "web-1", "--status", "warning")
	if !strings.Contains(out, "web-1") || !strings.Contains(out, "2m0s") {
		t.Errorf("heartbeat output:\n%s", out)
	}

	out = cli.mustRun("services")
	if want := "NAME  INSTANCES  PASSING\nweb   2          1\n"; out != want {
		t.Errorf("services output:\n%q\nwant:\n%q", out, want)
	}

	lookups := []struct {
		args []string
		want []string
	}{
		{[]string{"lookup", "web"}, []string{"web-1", other}},
		{[]string{"lookup", "web", "--tag", "v2"}, []string{"web-1"}},
		{[]string{"lookup", "web", "--meta", "zone=eu-1"}, []string{"web-1"}},
		{[]string{"lookup", "web", "--status", "passing"}, []string{other}},
		{[]string{"lookup", "web", "--tag", "v3"}, nil},
	}
	for _, tt := range lookups {
		var res client.ServiceInstances
		out := cli.mustRun(append(tt.args, "-o", "json")...)
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %v\n%s", tt.args, err, out)
		}
		var ids []string
		for _, in := range res.Instances {
			ids = append(ids, in.ID)
		}
		if !slices.Equal(sortedCopy(ids), sortedCopy(tt.want)) {
			t.Errorf("saga %v: ids %v, want %v", tt.args, ids, tt.want)
		}
		table := cli.mustRun(tt.args...)
		if lines := strings.Count(table, "\n"); lines != 1+len(tt.want) {
			t.Errorf("saga %v printed %d lines, want a header and %d rows:\n%s", tt.args, lines, len(tt.want), table)
		}
	}

	out = cli.mustRun("health")
	if !strings.Contains(out, "status") || !strings.Contains(out, "healthy") || !strings.Contains(out, "embedded") {
		t.Errorf("health output:\n%s", out)
	}
	if out, errOut, code := cli.run("health", "--quiet"); code != 0 || out != "" || errOut != "" {
		t.Errorf("health --quiet = exit %d, %q, %q; want 0 and silence", code, out, errOut)
	}
	out = cli.mustRun("health", "web", "-o", "json")
	var sh client.ServiceHealth
	if err := json.Unmarshal([]byte(out), &sh); err != nil || !sh.Healthy || sh.Passing != 1 || sh.Warning != 1 {
		t.Errorf("health web -o json = %+v, %v", sh, err)
	}

	if out := cli.mustRun("deregister", "web", "web-1"); out != "deregistered web/web-1\n" {
		t.Errorf("deregister output %q", out)
	}
	if _, err := cli.api.Instance(t.Context(), "web", "web-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("web-1 after deregister: %v", err)
	}
	if out, errOut, code := cli.run("deregister", "web", "web-1"); code != 1 || out != "" ||
		!strings.HasPrefix(errOut, "saga: deregister: ") || !strings.HasSuffix(errOut, "(not_found)\n") {
		t.Errorf("deregister twice = exit %d, %q, %q; want 1 and a not_found line", code, out, errOut)
	}
}

func TestHealthOfAServiceWithoutPassingInstances(t *testing.T) {
	cli := newClientCLI(t)
	out, errOut, code := cli.run("health", "nothing")
	if code != 1 || errOut != "" || !strings.Contains(out, "false") {
		t.Errorf("health nothing = exit %d, %q, %q; want 1 with the counts", code, out, errOut)
	}
}

func TestClientErrorsAreOneLine(t *testing.T) {
	cli := newClientCLI(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"register", "web", "--address", "10.0.0.5", "--port", "70000"},
			"saga: register: port: 70000 is out of range 1-65535 (invalid_argument)\n"},
		{[]string{"register", "web", "--address", "10.0.0.5", "--port", "80", "--keepalive", "--ttl", "0"},
			"saga: register: ttl: \"0\" must be a whole number of seconds, at least 1s\n"},
		{[]string{"register", "web", "--address", "10.0.0.5", "--port", "80", "--meta", "zone"},
			"saga: register: meta: \"zone\" must be key=value\n"},
		{[]string{"register", "web", "--port", "80"},
			"saga: required flag(s) \"address\" not set\n"},
		// The server words these; the command adds its name and the code.
		{[]string{"heartbeat", "web", "nope"}, "saga: heartbeat: instance \"nope\" … (not_found)\n"},
		{[]string{"lookup", "web", "--status", "sick"}, "saga: lookup: status: \"sick\" … (invalid_argument)\n"},
		{[]string{"services", "-o", "yaml"},
			"saga: services: output: \"yaml\" must be table or json\n"},
		{[]string{"services", "--server", "ftp://x"},
			"saga: services: server: \"ftp://x\": scheme must be http or https\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := cli.run(tt.args...)
			if code == 0 || out != "" {
				t.Errorf("exit %d, stdout %q; want a failure and no output", code, out)
			}
			prefix, suffix, elided := strings.Cut(tt.want, "…")
			matches := errOut == tt.want
			if elided {
				matches = strings.HasPrefix(errOut, prefix) && strings.HasSuffix(errOut, suffix) && strings.Count(errOut, "\n") == 1
			}
			if !matches {
				t.Errorf("stderr:\n%q\nwant:\n%q", errOut, tt.want)
			}
		})
	}
}

func TestUnreachableServerIsSaidPlainly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cli := &clientCLI{t: t, addr: "http://" + addr}

	// host:port without a scheme, from --server, wins over SAGA_ADDR.
	for _, args := range [][]string{{"services"}, {"services", "--server", addr}} {
		out, errOut, code := cli.run(args...)
		want := "saga: services: cannot reach saga at http://" + addr + ": connection refused\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("saga %v = exit %d, %q, %q; want 1 and %q", args, code, out, errOut, want)
		}
	}
	if out, errOut, code := cli.run("health", "--quiet"); code != 1 || out != "" || errOut != "" {
		t.Errorf("health --quiet = exit %d, %q, %q; want 1 and silence", code, out, errOut)
	}
	if _, errOut, code := cli.run("health"); code != 1 || !strings.Contains(errOut, "cannot reach saga") {
		t.Errorf("health = exit %d, %q; want 1 and the reason", code, errOut)
	}
}

func TestServerAddressComesFromFlagEnvOrDefault(t *testing.T) {
	tests := []struct {
		flag, env, want string
	}{
		{"", "", client.DefaultAddr},
		{"", "10.0.0.1:9000", "http://10.0.0.1:9000"},
		{"https://saga.example.com/", "10.0.0.1:9000", "https://saga.example.com"},
	}
	configDir := t.TempDir() // no config file, whoever runs the test
	for _, tt := range tests {
		a := &app{getenv: func(k string) string {
			switch k {
			case "SAGA_ADDR":
				return tt.env
			case "SAGA_CONFIG_DIR":
				return configDir
			}
			return ""
		}}
		flags := clientFlags{server: tt.flag, output: "table"}
		c, err := flags.connect(a, io.Discard)
		if err != nil {
			t.Fatalf("connect(--server %q, SAGA_ADDR %q): %v", tt.flag, tt.env, err)
		}
		if got := c.client.Addr(); got != tt.want {
			t.Errorf("--server %q, SAGA_ADDR %q: address %q, want %q", tt.flag, tt.env, got, tt.want)
		}
	}
}

func TestRegisterKeepAliveDeregistersOnExit(t *testing.T) {
	cli := newClientCLI(t)
	out, errOut, stop := cli.start("register", "web", "--id", "k", "--address", "10.0.0.5", "--port", "80", "--ttl", "30s", "--keepalive")
	waitForOutput(t, errOut, "saga: keeping web/k alive, a heartbeat every 15s; interrupt to deregister")
	if !strings.Contains(out.String(), "k ") {
		t.Errorf("register --keepalive printed no instance:\n%s", out.String())
	}
	if _, err := cli.api.Instance(t.Context(), "web", "k"); err != nil {
		t.Fatalf("instance while kept alive: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("register --keepalive exited %d; stderr:\n%s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "saga: deregistered web/k") {
		t.Errorf("stderr lacks the farewell:\n%s", errOut.String())
	}
	if _, err := cli.api.Instance(t.Context(), "web", "k"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("instance after --keepalive ended: %v, want deregistered", err)
	}
}

func TestLookupWatchPrintsEachChange(t *testing.T) {
	cli := newClientCLI(t)
	out, errOut, stop := cli.start("lookup", "web", "--watch", "-o", "json")
	waitForOutput(t, out, `"instances":[]`)
	cli.mustRun("register", "web", "--id", "a", "--address", "10.0.0.5", "--port", "80")
	waitForOutput(t, out, `"id":"a"`)
	cli.mustRun("deregister", "web", "a")
	if code := stop(); code != 0 {
		t.Fatalf("lookup --watch exited %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// The first answer, a's registration, and (unless the watch ended
	// first) a's removal: every line is one answer with a growing index.
	if len(lines) < 2 {
		t.Fatalf("lookup --watch printed %d lines, want at least 2:\n%s", len(lines), out.String())
	}
	var last uint64
	for i, line := range lines {
		var res client.ServiceInstances
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatalf("line %d is not one JSON answer: %v\n%s", i, err, line)
		}
		if i > 0 && res.Index <= last {
			t.Errorf("line %d has index %d after %d", i, res.Index, last)
		}
		last = res.Index
	}
}

func TestWatchPrintsOneLinePerEvent(t *testing.T) {
	cli := newClientCLI(t)
	out, errOut, stop := cli.start("watch", "web")
	waitForOutput(t, errOut, "saga: following the events of web; interrupt to stop")
	cli.mustRun("register", "web", "--id", "a", "--address", "10.0.0.5", "--port", "80")
	cli.mustRun("register", "api", "--id", "x", "--address", "10.0.0.6", "--port", "80")
	cli.mustRun("deregister", "web", "a")
	waitForOutput(t, out, "deregistered web/a")
	if code := stop(); code != 0 {
		t.Fatalf("watch exited %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "registered web/a 10.0.0.5:80 passing index=") ||
		!strings.HasPrefix(lines[1], "deregistered web/a 10.0.0.5:80 passing index=") {
		t.Errorf("watch printed:\n%s", out.String())
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestServiceNamesComplete(t *testing.T) {
	cli := newClientCLI(t)
	cli.mustRun("register", "web", "--address", "10.0.0.5", "--port", "80")
	cli.mustRun("register", "api", "--address", "10.0.0.6", "--port", "80")
	out := cli.mustRun("__complete", "lookup", "")
	if !strings.Contains(out, "api\n") || !strings.Contains(out, "web\n") || !strings.Contains(out, ":4\n") {
		t.Errorf("completing lookup's SERVICE:\n%s", out)
	}
	// The instance id after the service is not a service name.
	if out := cli.mustRun("__complete", "deregister", "web", ""); strings.Contains(out, "web\n") {
		t.Errorf("completing deregister's ID offered services:\n%s", out)
	}
}

// hasTerminalControl reports whether s holds a byte that a terminal obeys
// (C0 but for the newlines that end lines, DEL, or a C1 control) or bytes
// that are not UTF-8.
func hasTerminalControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r != '\n' && unicode.IsControl(r) })
}

// The server refuses control characters in tags and metadata now, but an
// instance stored by an earlier release, or a server of another version,
// can still hold them: whatever the CLI prints of it in a table is escaped.
func TestLookupTableEscapesServerStrings(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	api, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cli := &clientCLI{t: t, addr: srv.URL, api: api}

	fakeRow := "\x1b[2J\nweb      evil   6.6.6.6"
	reg := registry.Registration{
		ID: "a", Address: "10.0.0.5", Port: 80,
		Tags:     []string{"ok", fakeRow},
		Metadata: map[string]string{"zone": "eu\x1b]0;owned\x07", "note": "a\tb\u202ec"},
	}
	// Through the API, such a registration is refused, naming the tag.
	var apiErr *client.Error
	if _, err := api.Register(t.Context(), "web", reg); !errors.As(err, &apiErr) || apiErr.Field != "tags[1]" {
		t.Fatalf("API register of a tag with ESC and a newline = %v, want a 400 naming tags[1]", err)
	}
	// So it is written to the store directly, as an earlier release could have.
	ev, err := srv.Store.Register(t.Context(), registry.NewInstance("web", reg, time.Now(), time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv.View.Apply(ev)

	out := cli.mustRun("lookup", "web")
	if hasTerminalControl(out) {
		t.Errorf("lookup printed raw control characters:\n%q", out)
	}
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Errorf("lookup printed %d lines, want a header and one row:\n%s", lines, out)
	}
	for _, want := range []string{`ok,\x1b[2J\nweb      evil   6.6.6.6`, `note=a\tb\u202ec,zone=eu\x1b]0;owned\a`} {
		if !strings.Contains(out, want) {
			t.Errorf("lookup output lacks %s:\n%s", want, out)
		}
	}

	// -o json is escaped by JSON itself and keeps the exact text.
	var res client.ServiceInstances
	if err := json.Unmarshal([]byte(cli.mustRun("lookup", "web", "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Instances) != 1 || res.Instances[0].Tags[1] != fakeRow {
		t.Errorf("lookup -o json = %+v, want the tag as stored", res.Instances)
	}

	// The watching forms escape too.
	watchOut, errOut, stop := cli.start("lookup", "web", "--watch")
	waitForOutput(t, watchOut, "6.6.6.6")
	events, evErr, stopEvents := cli.start("watch", "web")
	waitForOutput(t, evErr, "saga: following the events of web")
	ev2, err := srv.Store.Register(t.Context(), registry.NewInstance("web", registry.Registration{ID: "b", Address: "10.0.0.6\x1b[31m", Port: 80, Tags: []string{"\u009b2J"}}, time.Now(), time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv.View.Apply(ev2)
	waitForOutput(t, events, `registered web/b 10.0.0.6\x1b[31m:80 passing`)
	waitForOutput(t, watchOut, `\u009b2J`)
	if code := stopEvents(); code != 0 {
		t.Fatalf("watch exited %d: %s", code, evErr.String())
	}
	if code := stop(); code != 0 {
		t.Fatalf("lookup --watch exited %d: %s", code, errOut.String())
	}
	for name, printed := range map[string]string{"lookup --watch": watchOut.String(), "watch": events.String()} {
		if hasTerminalControl(printed) {
			t.Errorf("%s printed raw control characters:\n%q", name, printed)
		}
	}
}

// An error message comes from the server, or from a proxy in front of it;
// a hostile or broken one must not reach the terminal raw either.
func TestClientErrorsFromTheServerAreEscaped(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		status                  int
		want                    string // after "saga: COMMAND: "
	}{
		{"API error", "application/json", `{"error":{"code":"invalid_argument","message":"bad\u001b[2J\u0007 thing\u202e","field":"ta\u001bg"}}`,
			http.StatusBadRequest, `ta\x1bg: bad\x1b[2J\a thing\u202e (invalid_argument)`},
		{"proxy page", "text/plain", "bad\x1b[2J\r\ngate\xffway\x9b", http.StatusBadGateway, `bad\x1b[2J gate\xffway\x9b (internal)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			cli := &clientCLI{t: t, addr: srv.URL}
			for _, args := range [][]string{{"lookup", "web"}, {"services"}, {"health", "web"}, {"register", "web", "--address", "10.0.0.5", "--port", "80"}} {
				out, errOut, code := cli.run(args...)
				want := "saga: " + args[0] + ": " + tt.want + "\n"
				if code != 1 || out != "" || errOut != want {
					t.Errorf("saga %v = exit %d, %q, %q; want 1 and %q", args, code, out, errOut, want)
				}
			}
		})
	}
}
