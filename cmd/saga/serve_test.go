package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// End-to-end tests of `saga serve`: each runs the real binary (built once
// in TestMain) on a free loopback port with its own data directory.

func TestServeAnswersProbesAndHealth(t *testing.T) {
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	for _, path := range []string{"/livez", "/readyz"} {
		if status := e2eDo(t, http.MethodGet, p.url(path), nil, nil); status != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, status)
		}
	}
	var health struct {
		Status  string `json:"status"`
		Service string `json:"service"`
		Version string `json:"version"`
		Storage string `json:"storage"`
	}
	if status := e2eDo(t, http.MethodGet, p.url("/api/v1/health"), nil, &health); status != http.StatusOK {
		t.Fatalf("GET /api/v1/health: status %d", status)
	}
	if health.Status != "healthy" || health.Service != "saga" || health.Version != stampedVersion || health.Storage != "embedded" {
		t.Errorf("health = %+v, want healthy saga %s on embedded", health, stampedVersion)
	}
}

func TestBareSagaServes(t *testing.T) {
	// `saga` without a command serves, and takes serve's flags.
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir()), "--port", "0")
	if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusOK {
		t.Fatalf("GET /livez: status %d", status)
	}
}

func TestRegistrationsSurviveKill9(t *testing.T) {
	dataDir := t.TempDir()
	env := sagaEnv(t, "SAGA_DATA_DIR="+dataDir)
	p := startSaga(t, env, "serve", "--port", "0")
	var want []string
	for i := range 50 {
		id := fmt.Sprintf("inst-%02d", i)
		e2eRegister(t, p, "durable", id, 3600)
		want = append(want, id)
	}
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)

	p = startSaga(t, env, "serve", "--port", "0")
	var got e2eLookup
	if status := e2eDo(t, http.MethodGet, p.url("/api/v1/services/durable"), nil, &got); status != http.StatusOK {
		t.Fatalf("lookup after restart: status %d", status)
	}
	var ids []string
	for _, in := range got.Instances {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, want) {
		t.Fatalf("after kill -9 and restart: %d instances %v, want the 50 registered", len(ids), ids)
	}
}

func TestConfigPrecedenceFileEnvFlag(t *testing.T) {
	filePort, envPort, flagPort := asynctest.FreePort(t), asynctest.FreePort(t), asynctest.FreePort(t)
	configDir := t.TempDir()
	file := fmt.Sprintf("[server]\nport = %d\n", filePort)
	if err := os.WriteFile(filepath.Join(configDir, "config.toml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"SAGA_CONFIG_DIR=" + configDir, "SAGA_DATA_DIR=" + t.TempDir()}
	tests := []struct {
		name string
		env  []string
		args []string
		want int
	}{
		{"file over default", nil, nil, filePort},
		{"environment over file", []string{"SAGA_SERVER_PORT=" + strconv.Itoa(envPort)}, nil, envPort},
		{"legacy environment name over file", []string{"PORT=" + strconv.Itoa(envPort)}, nil, envPort},
		{"flag over environment", []string{"SAGA_SERVER_PORT=" + strconv.Itoa(envPort)}, []string{"--port", strconv.Itoa(flagPort)}, flagPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sagaEnv(t, append(base, tt.env...)...)
			p := startSaga(t, env, append([]string{"serve"}, tt.args...)...)
			if _, port, _ := net.SplitHostPort(p.addr); e2eAtoi(t, port) != tt.want {
				t.Fatalf("serving on %s, want port %d", p.addr, tt.want)
			}
			if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusOK {
				t.Fatalf("GET /livez: status %d", status)
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(15 * time.Second); code != 0 {
				t.Fatalf("exit status %d after SIGTERM", code)
			}
		})
	}
}

func TestStartupErrorsAreOneLine(t *testing.T) {
	configDir := t.TempDir()
	badFile := filepath.Join(configDir, "bad.toml")
	if err := os.WriteFile(badFile, []byte("[server]\nprot = 8030\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad value from the environment", []string{"SAGA_SERVER_PORT=abc"}, nil,
			`saga: config: server.port: "abc" is not a port (from environment SAGA_SERVER_PORT)`},
		{"bad value from a legacy name", []string{"REGISTRATION_TTL=soon"}, nil,
			`saga: config: registry.ttl: "soon" is not a duration (use 60, 60s or 2m) (from environment REGISTRATION_TTL)`},
		{"bad flag value", nil, []string{"--log-level", "loud"},
			`saga: config: log.level: "loud" must be debug, info, warn or error (from flag --log-level)`},
		{"unknown key in the file", nil, []string{"--config", badFile},
			`saga: config: server.prot: is not a known key; did you mean server.port? (from file ` + badFile + `)`},
		{"missing --config file", nil, []string{"--config", filepath.Join(configDir, "missing.toml")},
			`saga: config: file ` + filepath.Join(configDir, "missing.toml") + `: no such file or directory`},
		{"busy port", nil, []string{"--port", busyPort},
			`saga: listen on 127.0.0.1:` + busyPort + `: bind: address already in use`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sagaEnv(t, append([]string{"SAGA_DATA_DIR=" + t.TempDir()}, tt.env...)...)
			stdout, stderr, code := runSaga(t, env, append([]string{"serve"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if stderr != tt.want+"\n" || stdout != "" {
				t.Fatalf("stderr\n got %q\nwant %q (and stdout %q empty)", stderr, tt.want+"\n", stdout)
			}
		})
	}
}

func TestDataDirInUseIsOneLine(t *testing.T) {
	dataDir := t.TempDir()
	startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+dataDir), "serve", "--port", "0")
	_, stderr, code := runSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+dataDir), "serve", "--port", "0")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "saga: open store: ") || !strings.Contains(stderr, "in use") {
		t.Fatalf("second saga on one data dir: exit %d, stderr %q; want 1 and one line saying it is in use", code, stderr)
	}
}

// startSlowRequest sends the headers and half the body of a registration
// and returns the connection and the rest of the body: a request in flight
// for as long as the test likes.
func startSlowRequest(t *testing.T, p *sagaProcess, service, id string) (net.Conn, string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"address":"10.0.0.9","port":9000,"ttl_seconds":3600}`, id)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /api/v1/services/%s/instances HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", service, p.addr, len(body))
	half := len(body) / 2
	if _, err := conn.Write([]byte(head + body[:half])); err != nil {
		t.Fatal(err)
	}
	return conn, body[half:]
}

func TestSIGTERMDrainsInFlightAndExitsZero(t *testing.T) {
	dataDir := t.TempDir()
	env := sagaEnv(t, "SAGA_DATA_DIR="+dataDir)
	p := startSaga(t, env, "serve", "--port", "0")
	conn, rest := startSlowRequest(t, p, "drain", "in-flight")
	time.Sleep(200 * time.Millisecond) // let the server start reading the body

	p.signal(syscall.SIGTERM)
	if _, err := p.logs.WaitRecord("shutting down", 10*time.Second, p.exited); err != nil {
		t.Fatal(err)
	}
	// The listener closes just after that line is logged.
	asynctest.Eventually(t, 5*time.Second, "listener closed while draining", func() error {
		probe, err := net.DialTimeout("tcp", p.addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if err != nil {
			return err
		}
		probe.Close()
		return errors.New("saga still accepts connections")
	})
	if _, err := conn.Write([]byte(rest)); err != nil {
		t.Fatalf("finish the request in flight: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status := make([]byte, len("HTTP/1.1 201"))
	if _, err := conn.Read(status); err != nil || string(status) != "HTTP/1.1 201" {
		t.Fatalf("request in flight during the drain got %q, %v; want HTTP/1.1 201", status, err)
	}
	conn.Close()
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	// The drained registration was stored before the store closed.
	p = startSaga(t, env, "serve", "--port", "0")
	if status := e2eDo(t, http.MethodGet, p.url("/api/v1/services/drain/instances/in-flight"), nil, nil); status != http.StatusOK {
		t.Fatalf("registration made during the drain: status %d after restart, want 200", status)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_SERVER_SHUTDOWN_TIMEOUT=5m"), "serve", "--port", "0")
	startSlowRequest(t, p, "drain", "stuck") // never finishes: the drain would wait
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGINT)
	if _, err := p.logs.WaitRecord("shutting down", 10*time.Second, p.exited); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 130 {
		t.Fatalf("exit status %d after a second signal, want 130", code)
	}
	if !strings.Contains(p.logs.String(), "saga: second signal; exiting at once") {
		t.Errorf("no word of the second signal in the output")
	}
}

func TestSIGHUPReloadsLogLevel(t *testing.T) {
	configDir := t.TempDir()
	file := filepath.Join(configDir, "config.toml")
	if err := os.WriteFile(file, []byte("[log]\nlevel = \"info\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startSaga(t, sagaEnv(t, "SAGA_CONFIG_DIR="+configDir, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	if err := os.WriteFile(file, []byte("[log]\nlevel = \"debug\"\n[registry]\nttl = 90\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	rec, err := p.logs.WaitRecord("configuration reloaded", 10*time.Second, p.exited)
	if err != nil {
		t.Fatal(err)
	}
	if applied, _ := rec["applied"].([]any); len(applied) != 1 || applied[0] != "log.level" {
		t.Errorf("reload logged as %v, want applied [log.level]", rec)
	}
	rec, err = p.logs.WaitRecord("configuration changed; these settings take effect after a restart", 10*time.Second, p.exited)
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := rec["keys"].([]any); len(keys) != 1 || keys[0] != "registry.ttl" {
		t.Errorf("restart-only changes logged as %v, want [registry.ttl]", rec["keys"])
	}

	// A file that no longer loads is reported; the server keeps serving.
	if err := os.WriteFile(file, []byte("[log]\nlevel = \"loud\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	if _, err := p.logs.WaitRecord("reload failed; keeping the running configuration", 10*time.Second, p.exited); err != nil {
		t.Fatal(err)
	}
	if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusOK {
		t.Fatalf("GET /livez after a failed reload: status %d", status)
	}
}

func TestBlockingQueryWakesWithin100ms(t *testing.T) {
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	e2eRegister(t, p, "watched", "first", 3600)
	var before e2eLookup
	e2eDo(t, http.MethodGet, p.url("/api/v1/services/watched"), nil, &before)

	type answer struct {
		body e2eLookup
		at   time.Time
	}
	woke := make(chan answer, 1)
	go func() {
		var a e2eLookup
		e2eDo(t, http.MethodGet, p.url(fmt.Sprintf("/api/v1/services/watched?index=%d&wait=30s", before.Index)), nil, &a)
		woke <- answer{a, time.Now()}
	}()
	time.Sleep(300 * time.Millisecond) // let the query reach its wait
	select {
	case a := <-woke:
		t.Fatalf("blocking query returned before any change: %+v", a.body)
	default:
	}

	// The change is made when the store acknowledges it; the time before
	// that is the store's (an fsync), not the wake-up's.
	e2eRegister(t, p, "watched", "second", 3600)
	changed := time.Now()
	select {
	case a := <-woke:
		if elapsed := a.at.Sub(changed); elapsed >= 100*time.Millisecond {
			t.Errorf("blocking query woke %s after the change was acknowledged, want under 100ms", elapsed)
		}
		if a.body.Index <= before.Index || len(a.body.Instances) != 2 {
			t.Errorf("woken answer: index %d (was %d), %d instances; want a newer index and 2", a.body.Index, before.Index, len(a.body.Instances))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not wake after a change")
	}
}

func TestEventStreamInOrder(t *testing.T) {
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url("/api/v1/events?service=ordered"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/v1/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := e2eReadEvents(t, resp.Body)

	e2eRegister(t, p, "other", "ignored", 3600) // another service: not in this stream
	e2eRegister(t, p, "ordered", "short", 1)
	e2eRegister(t, p, "ordered", "long", 3600)
	if status := e2eDo(t, http.MethodDelete, p.url("/api/v1/services/ordered/instances/long"), nil, nil); status != http.StatusNoContent {
		t.Fatalf("deregister: status %d", status)
	}

	want := []string{"registered short", "registered long", "deregistered long", "expired short"}
	var got []string
	var lastIndex uint64
	timeout := time.After(15 * time.Second)
	for len(got) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %v", got)
			}
			if ev.Data.Service != "ordered" || ev.Data.Type != ev.Type || ev.Data.Index <= lastIndex {
				t.Errorf("event %+v: want service ordered, type matching, index above %d", ev, lastIndex)
			}
			lastIndex = ev.Data.Index
			got = append(got, ev.Type+" "+ev.Data.Instance.ID)
		case <-timeout:
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestVersionIsStamped(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		stdout, stderr, code := runSaga(t, sagaEnv(t), args...)
		if code != 0 || !strings.HasPrefix(stdout, "saga "+stampedVersion+" (commit ") || stderr != "" {
			t.Errorf("saga %v: exit %d, stdout %q, stderr %q; want saga %s (commit …", args, code, stdout, stderr, stampedVersion)
		}
	}
}

func TestRedisURLSelectsTheRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	// The bare name that earlier releases used, as existing deployments set it.
	env := sagaEnv(t, "REDIS_URL="+srv.URL(), "SAGA_DATA_DIR="+t.TempDir())
	a := startSaga(t, env, "serve", "--port", "0")
	b := startSaga(t, env, "serve", "--port", "0")
	var health struct {
		Storage string `json:"storage"`
		Redis   string `json:"redis"`
	}
	if status := e2eDo(t, http.MethodGet, a.url("/api/v1/health"), nil, &health); status != http.StatusOK || health.Storage != "redis" {
		t.Fatalf("health: %d %+v, want storage redis", status, health)
	}
	e2eRegister(t, a, "shared", "one", 3600)
	asynctest.Eventually(t, time.Second, "a registration through one saga visible through the other", func() error {
		var got e2eLookup
		e2eDo(t, http.MethodGet, b.url("/api/v1/services/shared"), nil, &got)
		if len(got.Instances) != 1 {
			return fmt.Errorf("%d instances, want 1", len(got.Instances))
		}
		return nil
	})
}
