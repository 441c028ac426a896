package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
)

// The token commands run in-process against a fake of the API's token
// routes (SPEC §6), which records what they send.

// tokenAPI answers the token routes with canned answers.
type tokenAPI struct {
	t *testing.T

	mu       sync.Mutex
	requests []string         // "METHOD /path"
	bodies   []map[string]any // JSON bodies sent, decoded
	list     string           // the answer to GET /api/v1/tokens
}

const (
	bootstrapAnswer = `{"accessor":"0b5c3e51-6f0d-4c8e-9a55-2f4b1c7d9e10","secret":"saga_first","role":"admin","services":[],` +
		`"description":"bootstrap","created_at":"2026-01-02T03:04:05Z"}`
	createAnswer = `{"accessor":"7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c","secret":"saga_second","role":"write","services":["web*","api"],` +
		`"description":"deploys","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-02-01T03:04:05Z"}`
)

func (f *tokenAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.EscapedPath())
	if data, _ := io.ReadAll(r.Body); len(data) > 0 {
		var body map[string]any
		if err := json.Unmarshal(data, &body); err != nil {
			f.t.Errorf("%s %s: body is not JSON: %q", r.Method, r.URL.Path, data)
		}
		f.bodies = append(f.bodies, body)
	}
	w.Header().Set("Content-Type", "application/json")
	reply := func(status int, body string) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /api/v1/tokens/bootstrap":
		reply(http.StatusCreated, bootstrapAnswer)
	case "POST /api/v1/tokens":
		reply(http.StatusCreated, createAnswer)
	case "GET /api/v1/tokens":
		reply(http.StatusOK, f.list)
	case "DELETE /api/v1/tokens/7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c":
		w.WriteHeader(http.StatusNoContent)
	default:
		reply(http.StatusNotFound, `{"error":{"code":"not_found","message":"token `+strings.TrimPrefix(r.URL.Path, "/api/v1/tokens/")+` not found"}}`)
	}
}

func (f *tokenAPI) sent() ([]string, []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...), append([]map[string]any(nil), f.bodies...)
}

// newTokenCLI runs saga commands against a fresh tokenAPI.
func newTokenCLI(t *testing.T) (*clientCLI, *tokenAPI) {
	t.Helper()
	api := &tokenAPI{t: t, list: `{"tokens":[]}`}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &clientCLI{t: t, addr: srv.URL}, api
}

func TestTokenFlagsAreCheckedBeforeAnyRequest(t *testing.T) {
	tests := []struct {
		args []string
		want string // the one line on stderr
	}{
		{[]string{"token", "create"}, `saga: required flag(s) "role" not set`},
		{[]string{"token", "create", "--role", "root"},
			`saga: token create: role: "root" is not a role (read, write or admin)`},
		{[]string{"token", "create", "--role", "write", "--expires", "a month"},
			`saga: token create: expires: "a month" is not a duration like 30s, 2m or 60 (seconds), and not negative`},
		{[]string{"token", "create", "--role", "write", "--expires", "-1h"},
			`saga: token create: expires: "-1h" is not a duration like 30s, 2m or 60 (seconds), and not negative`},
		{[]string{"token", "create", "--role", "write", "--expires", "0"},
			`saga: token create: expires: "0" must be more than 0; leave --expires out for a token that never expires`},
		{[]string{"token", "create", "--role", "read", "--service", "web", "--service", "web/api"},
			`saga: token create: service: "web/api" is not a service name glob: only letters, digits, '.', '_', '-', '*' and '?'`},
		{[]string{"token", "create", "--role", "read", "-o", "yaml"},
			`saga: token create: output: "yaml" must be table or json`},
		{[]string{"token", "list", "extra"}, `saga: list: unknown command "extra" for "saga token list" (usage: saga token list [flags])`},
		{[]string{"token", "revoke"}, `saga: revoke: accepts 1 arg(s), received 0 (usage: saga token revoke ACCESSOR [flags])`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cli, api := newTokenCLI(t)
			out, errOut, code := cli.run(tt.args...)
			if code == 0 || out != "" || errOut != tt.want+"\n" {
				t.Errorf("exit %d, stdout %q, stderr:\n%q\nwant a failure and:\n%q", code, out, errOut, tt.want+"\n")
			}
			if requests, _ := api.sent(); len(requests) != 0 {
				t.Errorf("sent %v before checking the flags", requests)
			}
		})
	}
}

func TestTokenBootstrapPrintsTheSecretOnce(t *testing.T) {
	cli, api := newTokenCLI(t)
	out, errOut, code := cli.run("token", "bootstrap")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "accessor  0b5c3e51-6f0d-4c8e-9a55-2f4b1c7d9e10\n" +
		"secret    saga_first\n" +
		"role      admin\n" +
		"services  all\n" +
		"expires   never\n" +
		"description  bootstrap\n"
	if got := alignedRows(out); !reflect.DeepEqual(got, alignedRows(want)) {
		t.Errorf("bootstrap printed:\n%s\nwant the rows of:\n%s", out, want)
	}
	if errOut != "saga: keep the secret safe: it is not shown again, and the server keeps only its hash\n" {
		t.Errorf("bootstrap advice %q", errOut)
	}
	if requests, bodies := api.sent(); !reflect.DeepEqual(requests, []string{"POST /api/v1/tokens/bootstrap"}) || len(bodies) != 0 {
		t.Errorf("bootstrap sent %v with bodies %v", requests, bodies)
	}

	out = cli.mustRun("token", "bootstrap", "-o", "json")
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("bootstrap -o json: %v\n%s", err, out)
	}
	if want := map[string]string{"accessor": "0b5c3e51-6f0d-4c8e-9a55-2f4b1c7d9e10", "secret": "saga_first"}; !reflect.DeepEqual(got, want) {
		t.Errorf("bootstrap -o json = %v, want %v", got, want)
	}
}

// alignedRows splits a key-value table into its cells, so a test need not
// spell out tabwriter's padding.
func alignedRows(s string) [][]string {
	var rows [][]string
	for line := range strings.Lines(s) {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestTokenCreateSendsTheFlagsAndPrintsTheSecret(t *testing.T) {
	cli, api := newTokenCLI(t)
	out := cli.mustRun("token", "create", "--role", "write", "--service", "web*", "--service", "api",
		"--expires", "720h", "--description", "deploys")
	for _, want := range []string{"7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c", "saga_second", "web*,api", "2026-02-01T03:04:05Z", "deploys"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	requests, bodies := api.sent()
	if !reflect.DeepEqual(requests, []string{"POST /api/v1/tokens"}) {
		t.Fatalf("create sent %v", requests)
	}
	wantBody := map[string]any{"role": "write", "services": []any{"web*", "api"}, "description": "deploys", "expires_in": "720h0m0s"}
	if !reflect.DeepEqual(bodies[0], wantBody) {
		t.Errorf("create sent %v, want %v", bodies[0], wantBody)
	}

	// Seconds are a duration too; without flags, nothing but the role is sent.
	cli.mustRun("token", "create", "--role", "read", "--expires", "3600")
	cli.mustRun("token", "create", "--role", "admin")
	_, bodies = api.sent()
	if want := map[string]any{"role": "read", "expires_in": "1h0m0s"}; !reflect.DeepEqual(bodies[1], want) {
		t.Errorf("create --expires 3600 sent %v, want %v", bodies[1], want)
	}
	if want := map[string]any{"role": "admin"}; !reflect.DeepEqual(bodies[2], want) {
		t.Errorf("create --role admin sent %v, want %v", bodies[2], want)
	}

	out = cli.mustRun("token", "create", "--role", "write", "-o", "json")
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("create -o json: %v\n%s", err, out)
	}
	if want := map[string]string{"accessor": "7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c", "secret": "saga_second"}; !reflect.DeepEqual(got, want) {
		t.Errorf("create -o json = %v, want %v", got, want)
	}
}

func TestTokenListMarksExpiredTokensAndEscapesDescriptions(t *testing.T) {
	cli, api := newTokenCLI(t)
	api.list = `{"tokens":[` +
		`{"accessor":"a-1","role":"admin","services":[],"description":"bootstrap","created_at":"2026-01-02T03:04:05Z","expired":false},` +
		`{"accessor":"a-2","role":"write","services":["web*","api"],"description":"","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-02-01T03:04:05Z","expired":false},` +
		`{"accessor":"a-3","role":"read","services":["web"],"description":"ci\u001b[2J\nfake  row\u202e","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-03T00:00:00Z","expired":true}]}`
	out := cli.mustRun("token", "list")
	want := "ACCESSOR  ROLE   SERVICES  EXPIRES                         DESCRIPTION\n" +
		"a-1       admin  all       never                           bootstrap\n" +
		"a-2       write  web*,api  2026-02-01T03:04:05Z            -\n" +
		`a-3       read   web       2026-01-03T00:00:00Z (expired)  ci\x1b[2J\nfake  row\u202e` + "\n"
	if out != want {
		t.Errorf("token list:\n%s\nwant:\n%s", out, want)
	}
	if hasTerminalControl(out) {
		t.Errorf("token list printed raw control characters:\n%q", out)
	}

	// -o json is the API's list, with the exact text.
	var got struct {
		Tokens []client.Token `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(cli.mustRun("token", "list", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Tokens) != 3 || !got.Tokens[2].Expired || got.Tokens[2].Description != "ci\x1b[2J\nfake  row\u202e" ||
		got.Tokens[0].Services == nil {
		t.Errorf("token list -o json = %+v", got.Tokens)
	}

	api.list = `{"tokens":[]}`
	if out := cli.mustRun("token", "list"); out != "ACCESSOR  ROLE  SERVICES  EXPIRES  DESCRIPTION\n" {
		t.Errorf("an empty token list printed %q", out)
	}
	if out := cli.mustRun("token", "list", "-o", "json"); out != "{\n  \"tokens\": []\n}\n" {
		t.Errorf("an empty token list -o json printed %q", out)
	}
}

func TestTokenRevoke(t *testing.T) {
	cli, api := newTokenCLI(t)
	if out := cli.mustRun("token", "revoke", "7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c"); out != "revoked token 7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c\n" {
		t.Errorf("revoke printed %q", out)
	}
	if requests, _ := api.sent(); !reflect.DeepEqual(requests, []string{"DELETE /api/v1/tokens/7d1f0a2b-1c3e-4f5a-8b6c-9d0e1f2a3b4c"}) {
		t.Errorf("revoke sent %v", requests)
	}

	out, errOut, code := cli.run("token", "revoke", "nope")
	if code != 1 || out != "" || errOut != "saga: token revoke: token nope not found (not_found)\n" {
		t.Errorf("revoke of an unknown accessor = exit %d, %q, %q", code, out, errOut)
	}
}

// The token commands against the real binary: the server's routes and the
// CLI agree. Auth is off, so a loopback client may manage tokens without
// sending one; the tests with auth on send the admin token.
func TestTokenCommandsAgainstTheRealBinary(t *testing.T) {
	server := startSaga(t, sagaEnv(t), "serve", "--port", "0", "--data-dir", t.TempDir())
	env := sagaEnv(t, "SAGA_ADDR=http://"+server.addr)
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, code := runSaga(t, env, args...)
		if code != 0 {
			t.Fatalf("saga %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	var first struct{ Accessor, Secret string }
	if err := json.Unmarshal([]byte(mustRun("token", "bootstrap", "-o", "json")), &first); err != nil || !strings.HasPrefix(first.Secret, "saga_") {
		t.Fatalf("bootstrap -o json = %+v, %v", first, err)
	}
	if _, errOut, code := runSaga(t, env, "token", "bootstrap"); code != 1 || !strings.HasSuffix(errOut, "(permission_denied)\n") {
		t.Errorf("a second bootstrap = exit %d, %q; want 1 and permission_denied", code, errOut)
	}

	var scoped struct{ Accessor, Secret string }
	out := mustRun("token", "create", "--role", "write", "--service", "web*", "--expires", "720h", "--description", "deploys", "-o", "json")
	if err := json.Unmarshal([]byte(out), &scoped); err != nil || scoped.Accessor == "" || scoped.Secret == first.Secret {
		t.Fatalf("create -o json = %+v, %v", scoped, err)
	}

	var listed struct{ Tokens []client.Token }
	if err := json.Unmarshal([]byte(mustRun("token", "list", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Tokens) != 2 {
		t.Fatalf("token list = %+v, want the bootstrap token and the new one", listed.Tokens)
	}
	for _, tok := range listed.Tokens {
		if tok.Accessor == scoped.Accessor &&
			(tok.Role != "write" || !reflect.DeepEqual(tok.Services, []string{"web*"}) || tok.Description != "deploys" || tok.ExpiresAt.IsZero() || tok.Expired) {
			t.Errorf("the new token is listed as %+v", tok)
		}
	}
	table := mustRun("token", "list")
	if strings.Contains(table, "saga_") || !strings.Contains(table, scoped.Accessor) || !strings.Contains(table, "web*") {
		t.Errorf("token list shows a secret, or not the new token:\n%s", table)
	}

	if out := mustRun("token", "revoke", scoped.Accessor); out != "revoked token "+scoped.Accessor+"\n" {
		t.Errorf("revoke printed %q", out)
	}
	if table := mustRun("token", "list"); strings.Contains(table, scoped.Accessor) || !strings.Contains(table, first.Accessor) {
		t.Errorf("token list after revoke:\n%s", table)
	}
	if _, errOut, code := runSaga(t, env, "token", "revoke", scoped.Accessor); code != 1 || !strings.HasSuffix(errOut, "(not_found)\n") {
		t.Errorf("revoke twice = exit %d, %q; want 1 and not_found", code, errOut)
	}
}
