package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Security through the real binary (SPEC §6): tokens, roles, scopes,
// expiry, revocation, persistence, and agreement between Sagas.

// authedDo sends a request with the bearer token secret ("" for none) and
// returns the status and body.
func authedDo(t *testing.T, secret, method, url string, body any) (int, []byte) {
	t.Helper()
	client := &http.Client{Transport: bearerTransport{secret}}
	status, _, data, err := sendJSON(t.Context(), client, 10*time.Second, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, data
}

// answers is a condition for asynctest.Eventually: a GET of url with the
// token secret answers want.
func answers(t *testing.T, secret, url string, want int) func() error {
	return func() error {
		if status, body := authedDo(t, secret, http.MethodGet, url, nil); status != want {
			return fmt.Errorf("GET %s: %d %s, want %d", url, status, body, want)
		}
		return nil
	}
}

type bearerTransport struct{ secret string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.secret != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.secret)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// newToken runs `saga token ARGS -o json` against p as admin and returns
// the new token's accessor and secret.
func newToken(t *testing.T, p *sagaProcess, admin string, args ...string) (accessor, secret string) {
	t.Helper()
	env := sagaEnv(t, "SAGA_ADDR=http://"+p.addr)
	if admin != "" {
		env = append(env, "SAGA_TOKEN="+admin)
	}
	stdout, stderr, code := runSaga(t, env, append(append([]string{"token"}, args...), "-o", "json")...)
	if code != 0 {
		t.Fatalf("saga token %v: exit %d: %s", args, code, stderr)
	}
	var tok struct{ Accessor, Secret string }
	if err := json.Unmarshal([]byte(stdout), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("saga token %v printed %q: %v", args, stdout, err)
	}
	return tok.Accessor, tok.Secret
}

var webInstance = map[string]any{"id": "web-1", "address": "10.0.0.1", "port": 80}

func TestAuthThroughTheBinary(t *testing.T) {
	dataDir := t.TempDir()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	env := sagaEnv(t, "SAGA_DATA_DIR="+dataDir, "SAGA_AUTH_ENABLED=true", "SAGA_LOG_AUDIT_FILE="+auditFile)
	p := startSaga(t, env, "serve", "--port", "0")

	_, admin := newToken(t, p, "", "bootstrap")
	readAcc, reader := newToken(t, p, admin, "create", "--role", "read", "--description", "dashboards")
	_, webWriter := newToken(t, p, admin, "create", "--role", "write", "--service", "web*")
	_, shortLived := newToken(t, p, admin, "create", "--role", "read", "--expires", "1s")

	// No token: 401. A read token writing: 403.
	if status, body := authedDo(t, "", http.MethodGet, p.url("/api/v1/services"), nil); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", status, body)
	}
	if status, body := authedDo(t, reader, http.MethodPost, p.url("/api/v1/services/web/instances"), webInstance); status != http.StatusForbidden {
		t.Fatalf("read token registering: %d %s", status, body)
	}
	// The probes stay open.
	for _, path := range []string{"/livez", "/readyz", "/api/v1/health", "/api/v1/services/web/health"} {
		if status, body := authedDo(t, "", http.MethodGet, p.url(path), nil); status == http.StatusUnauthorized || status == http.StatusForbidden {
			t.Errorf("probe %s without a token: %d %s", path, status, body)
		}
	}

	// A write token scoped to web* follows the events of its scope only.
	events := openAuthedStream(t, p, webWriter)
	if status, body := authedDo(t, admin, http.MethodPost, p.url("/api/v1/services/db/instances"), map[string]any{"id": "db-1", "address": "10.0.0.2", "port": 5432}); status != http.StatusCreated {
		t.Fatalf("admin registering db: %d %s", status, body)
	}
	if status, body := authedDo(t, webWriter, http.MethodPost, p.url("/api/v1/services/db/instances"), webInstance); status != http.StatusForbidden {
		t.Fatalf("web* token registering db: %d %s", status, body)
	}
	if status, body := authedDo(t, webWriter, http.MethodPost, p.url("/api/v1/services/web/instances"), webInstance); status != http.StatusCreated {
		t.Fatalf("web* token registering web: %d %s", status, body)
	}
	select {
	case ev := <-events:
		if ev.Data.Service != "web" {
			t.Fatalf("the web* token's stream showed an event of %q first", ev.Data.Service)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the web* token's stream")
	}
	_, body := authedDo(t, webWriter, http.MethodGet, p.url("/api/v1/services"), nil)
	if strings.Contains(string(body), `"db"`) || !strings.Contains(string(body), `"web"`) {
		t.Fatalf("the web* token's catalogue: %s", body)
	}

	// Expired and revoked tokens are refused.
	asynctest.Eventually(t, 5*time.Second, "the 1s token to expire", answers(t, shortLived, p.url("/api/v1/services"), http.StatusUnauthorized))
	if status, body := authedDo(t, reader, http.MethodGet, p.url("/api/v1/services"), nil); status != http.StatusOK {
		t.Fatalf("read token before revocation: %d %s", status, body)
	}
	if _, stderr, code := runSaga(t, sagaEnv(t, "SAGA_ADDR=http://"+p.addr, "SAGA_TOKEN="+admin), "token", "revoke", readAcc); code != 0 {
		t.Fatalf("saga token revoke: exit %d: %s", code, stderr)
	}
	if status, body := authedDo(t, reader, http.MethodGet, p.url("/api/v1/services"), nil); status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d %s", status, body)
	}

	// The audit file has a line per write, and never a secret.
	audit, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{admin, reader, webWriter, shortLived} {
		if strings.Contains(string(audit), secret) {
			t.Fatal("the audit file holds a secret")
		}
	}
	var sawRefusedDB, sawRevoke bool
	for line := range strings.Lines(string(audit)) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec["service"] == "db" && rec["outcome"] == "permission_denied" && rec["client"] == "127.0.0.1" {
			sawRefusedDB = true
		}
		if rec["method"] == "DELETE" && rec["token"] == readAcc && rec["outcome"] == "ok" {
			sawRevoke = true
		}
	}
	if !sawRefusedDB || !sawRevoke {
		t.Fatalf("the audit file lacks the refused db write (%v) or the revocation (%v):\n%s", sawRefusedDB, sawRevoke, audit)
	}

	// Tokens survive a clean restart, and kill -9 right after a create.
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("saga exited %d", code)
	}
	p = startSaga(t, env, "serve", "--port", "0")
	_, lastMinute := newToken(t, p, admin, "create", "--role", "write")
	p.signal(syscall.SIGKILL)
	p.wait(20 * time.Second)
	p = startSaga(t, env, "serve", "--port", "0")
	for name, secret := range map[string]string{"admin": admin, "web*": webWriter, "the one made before kill -9": lastMinute} {
		if status, body := authedDo(t, secret, http.MethodGet, p.url("/api/v1/services/web"), nil); status != http.StatusOK {
			t.Errorf("%s token after restart: %d %s", name, status, body)
		}
	}
	if status, _ := authedDo(t, reader, http.MethodGet, p.url("/api/v1/services"), nil); status != http.StatusUnauthorized {
		t.Errorf("the revoked token came back after restart: %d", status)
	}
}

// openAuthedStream follows /api/v1/events with the token secret.
func openAuthedStream(t *testing.T, p *sagaProcess, secret string) <-chan e2eEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url("/api/v1/events"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	return e2eReadEvents(t, resp.Body)
}

// TestTokensAgreeAcrossSagasOnRedis: a token made through one Saga is
// honoured by another on the same Redis within 1 s, and so is its
// revocation.
func TestTokensAgreeAcrossSagasOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	start := func() *sagaProcess {
		env := sagaEnv(t, "REDIS_URL="+srv.URL(), "SAGA_DATA_DIR="+t.TempDir(), "SAGA_AUTH_ENABLED=true")
		return startSaga(t, env, "serve", "--port", "0")
	}
	a, b := start(), start()
	_, admin := newToken(t, a, "", "bootstrap")
	if _, _, code := runSaga(t, sagaEnv(t, "SAGA_ADDR=http://"+b.addr), "token", "bootstrap"); code == 0 {
		t.Fatal("a second bootstrap, through the other Saga, succeeded")
	}

	accessor, secret := newToken(t, a, admin, "create", "--role", "read")
	took := asynctest.Eventually(t, 5*time.Second, "saga B to honour the new token", answers(t, secret, b.url("/api/v1/services"), http.StatusOK))
	if took > time.Second {
		t.Errorf("saga B honoured the new token after %s, want within 1s", took)
	}

	if _, stderr, code := runSaga(t, sagaEnv(t, "SAGA_ADDR=http://"+a.addr, "SAGA_TOKEN="+admin), "token", "revoke", accessor); code != 0 {
		t.Fatalf("revoke: %s", stderr)
	}
	took = asynctest.Eventually(t, 5*time.Second, "saga B to refuse the revoked token", answers(t, secret, b.url("/api/v1/services"), http.StatusUnauthorized))
	if took > time.Second {
		t.Errorf("saga B refused the revoked token after %s, want within 1s", took)
	}

	// B lists what A made.
	status, body := authedDo(t, admin, http.MethodGet, b.url("/api/v1/tokens"), nil)
	var list struct{ Tokens []struct{ Accessor string } }
	if err := json.Unmarshal(body, &list); status != http.StatusOK || err != nil {
		t.Fatalf("list on B: %d %s", status, body)
	}
	if slices.ContainsFunc(list.Tokens, func(tok struct{ Accessor string }) bool { return tok.Accessor == accessor }) || len(list.Tokens) != 1 {
		t.Fatalf("B lists %s; want only the bootstrap token", body)
	}
}

// TestSIGHUPTurnsTLSAndAuthOn: editing the configuration file and sending
// SIGHUP turns TLS and auth on for new connections, without a restart,
// while a blocking query opened before keeps its plain connection and
// answers. (`systemctl reload saga` sends that signal.)
func TestSIGHUPTurnsTLSAndAuthOn(t *testing.T) {
	s := newTLSSetup(t)
	configDir := t.TempDir()
	file := filepath.Join(configDir, "config.toml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startSaga(t, sagaEnv(t, "SAGA_CONFIG_DIR="+configDir, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	_, admin := newToken(t, p, "", "bootstrap")
	e2eRegister(t, p, "web", "web-1", 3600)
	before := e2eLookupOf(t, p, "web")
	// Two blocking queries on plain connections: one with a token, one
	// without.
	withToken := startAuthedBlockingLookup(t, p, admin, "web", before.Index)
	without := startBlockingLookup(t, p, "web", before.Index, 30*time.Second)
	asynctest.Eventually(t, 10*time.Second, "the blocking query to be open", func() error {
		_, body := authedDo(t, "", http.MethodGet, p.url("/metrics"), nil)
		if !strings.Contains(string(body), "saga_http_blocking_queries_open 2") {
			return errors.New("saga_http_blocking_queries_open is not 2")
		}
		return nil
	})

	edited := fmt.Sprintf("[server.tls]\ncert_file = %q\nkey_file = %q\n[auth]\nenabled = true\n", s.certFile, s.keyFile)
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	rec, err := p.logs.WaitRecord("configuration reloaded", 10*time.Second, p.exited)
	if err != nil {
		t.Fatal(err)
	}
	if applied := fmt.Sprint(rec["applied"]); !strings.Contains(applied, "server.tls.cert_file") || !strings.Contains(applied, "auth.enabled") {
		t.Fatalf("the reload applied %s, want the TLS files and auth.enabled", applied)
	}

	// New connections: TLS, and a token is needed.
	https := "https://" + p.addr + "/api/v1/services/web"
	client := s.httpsClient(false)
	client.Transport.(*http.Transport).TLSClientConfig.ServerName = "localhost"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, https, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("https after the reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("https without a token after the reload: %d, want 401", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	if resp, err = client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("https with the token: %v %v", resp, err)
	}
	resp.Body.Close()

	// The one without a token may no longer wait: it answers 401 at once.
	select {
	case got := <-without:
		if got.err != nil || got.status != http.StatusUnauthorized {
			t.Fatalf("the blocking query without a token, after auth was turned on: %+v, want 401", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query without a token outlived the reload that turned auth on")
	}
	// The one with a token is still there, on its plain connection, and
	// answers the next change.
	if _, stderr, code := runSaga(t, sagaEnv(t, "SAGA_ADDR=https://"+p.addr, "SAGA_CACERT="+s.caFile, "SAGA_TOKEN="+admin),
		"register", "web", "--id", "web-2", "--address", "10.0.0.6", "--port", "80"); code != 0 {
		t.Fatalf("register over https with a token: %s", stderr)
	}
	select {
	case got := <-withToken:
		if got.err != nil || got.status != http.StatusOK || !got.body.has("web-2") {
			t.Fatalf("the blocking query opened with a token before the reload answered %+v", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking query opened with a token before the reload did not answer")
	}
}

// startAuthedBlockingLookup is startBlockingLookup with a bearer token.
func startAuthedBlockingLookup(t *testing.T, p *sagaProcess, secret, service string, index uint64) <-chan blockingLookup {
	t.Helper()
	u := p.url(fmt.Sprintf("/api/v1/services/%s?index=%d&wait=30s", service, index))
	answer := make(chan blockingLookup, 1)
	go func() {
		var a blockingLookup
		defer func() { answer <- a }()
		client := &http.Client{Transport: bearerTransport{secret}}
		status, _, body, err := sendJSON(t.Context(), client, time.Minute, http.MethodGet, u, nil)
		a.status, a.at, a.err = status, time.Now(), err
		if err == nil {
			a.err = json.Unmarshal(body, &a.body)
		}
	}()
	return answer
}
