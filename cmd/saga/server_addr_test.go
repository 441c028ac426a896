package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
)

// addrEnv is an environment whose configuration directory is a fresh
// temporary one, holding config.toml when file is not empty: the tests never
// read the machine's own configuration, whoever runs them.
func addrEnv(t *testing.T, file string, env map[string]string) func(string) string {
	t.Helper()
	dir := t.TempDir()
	if file != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return func(k string) string {
		if k == "SAGA_CONFIG_DIR" {
			return dir
		}
		return env[k]
	}
}

// TestClientServerAddrFollowsTheServersConfig: without --server and
// SAGA_ADDR, a client command asks the server that `saga serve` would run
// in the same environment.
func TestClientServerAddrFollowsTheServersConfig(t *testing.T) {
	tests := []struct {
		name string
		flag string
		file string
		env  map[string]string
		want string
	}{
		{name: "defaults", want: "http://127.0.0.1:8030"},
		{name: "legacy PORT", env: map[string]string{"PORT": "9000"}, want: "http://127.0.0.1:9000"},
		{name: "SAGA_SERVER_PORT", env: map[string]string{"SAGA_SERVER_PORT": "9001"}, want: "http://127.0.0.1:9001"},
		{name: "SAGA_SERVER_PORT wins over PORT", env: map[string]string{"SAGA_SERVER_PORT": "9001", "PORT": "9000"}, want: "http://127.0.0.1:9001"},
		{name: "the image: every interface", env: map[string]string{"SAGA_SERVER_HOST": "0.0.0.0", "PORT": "9000"}, want: "http://127.0.0.1:9000"},
		{name: "legacy HOST", env: map[string]string{"HOST": "10.0.0.7"}, want: "http://10.0.0.7:8030"},
		{name: "every IPv6 interface", env: map[string]string{"SAGA_SERVER_HOST": "::"}, want: "http://[::1]:8030"},
		{name: "IPv6 address", env: map[string]string{"SAGA_SERVER_HOST": "fd00::7", "SAGA_SERVER_PORT": "9002"}, want: "http://[fd00::7]:9002"},
		{name: "host name", env: map[string]string{"HOST": "localhost"}, want: "http://localhost:8030"},
		{name: "config file", file: "[server]\nhost = \"0.0.0.0\"\nport = 9100\n", want: "http://127.0.0.1:9100"},
		{name: "environment over file", file: "[server]\nport = 9100\n", env: map[string]string{"PORT": "9200"}, want: "http://127.0.0.1:9200"},
		{name: "SAGA_ADDR over configuration", file: "[server]\nport = 9100\n",
			env: map[string]string{"PORT": "9200", "SAGA_ADDR": "10.0.0.1:9000"}, want: "http://10.0.0.1:9000"},
		{name: "--server over everything", flag: "https://saga.example.com", file: "[server]\nport = 9100\n",
			env: map[string]string{"PORT": "9200", "SAGA_ADDR": "10.0.0.1:9000"}, want: "https://saga.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var notes bytes.Buffer
			a := &app{getenv: addrEnv(t, tt.file, tt.env)}
			flags := clientFlags{server: tt.flag, output: "table"}
			c, err := flags.connect(a, &notes)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.client.Addr(); got != tt.want {
				t.Errorf("address %q, want %q", got, tt.want)
			}
			if notes.Len() != 0 {
				t.Errorf("unexpected note: %q", notes.String())
			}
		})
	}
}

// TestClientServerAddrFallsBackOnABadConfig: a configuration that `saga
// serve` would refuse does not stop a client command. It asks the default
// address and says why on stderr, except when it is quiet.
func TestClientServerAddrFallsBackOnABadConfig(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		wants []string // in the note
	}{
		{name: "bad port", env: map[string]string{"PORT": "abc"}, wants: []string{"server.port", `"abc"`, "environment PORT"}},
		{name: "unknown key in the file", file: "[server]\nprot = 9000\n", wants: []string{"server.prot", "server.port?"}},
		{name: "unreadable file", file: "[server\n", wants: []string{"config.toml", "line 1"}},
		{name: "a key the client does not need", env: map[string]string{"PORT": "9000", "LOG_LEVEL": "loud"}, wants: []string{"log.level", `"loud"`}},
		{name: "a free port at start", env: map[string]string{"PORT": "0"}, wants: []string{"server.port is 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{getenv: addrEnv(t, tt.file, tt.env)}
			var notes bytes.Buffer
			c, err := (&clientFlags{output: "table"}).connect(a, &notes)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.client.Addr(); got != client.DefaultAddr {
				t.Errorf("address %q, want the default %q", got, client.DefaultAddr)
			}
			note := notes.String()
			if !strings.HasPrefix(note, "saga: ignoring the configuration for the server's address: ") ||
				!strings.HasSuffix(note, "; asking "+client.DefaultAddr+"\n") || strings.Count(note, "\n") != 1 {
				t.Errorf("note %q; want one line that names the problem and the address asked", note)
			}
			for _, want := range tt.wants {
				if !strings.Contains(note, want) {
					t.Errorf("note %q lacks %q", note, want)
				}
			}

			notes.Reset()
			if _, err := (&clientFlags{output: "table", quiet: true}).connect(a, &notes); err != nil || notes.Len() != 0 {
				t.Errorf("quiet: %v, note %q; want silence", err, notes.String())
			}
		})
	}
}

// TestHealthFindsTheServerOnItsConfiguredPort is the image's HEALTHCHECK
// with `-e PORT=…`: `saga health --quiet` and nothing else set.
func TestHealthFindsTheServerOnItsConfiguredPort(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PORT", "SAGA_SERVER_PORT"} {
		env := addrEnv(t, "", map[string]string{"SAGA_SERVER_HOST": "0.0.0.0", name: u.Port()})
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"health", "--quiet"}, env, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Errorf("%s=%s saga health --quiet: exit %d, stderr %q; want 0", name, u.Port(), code, stderr.String())
		}
		if stdout.Len() != 0 || stderr.Len() != 0 {
			t.Errorf("%s=%s saga health --quiet printed %q, %q; want nothing", name, u.Port(), stdout.String(), stderr.String())
		}
	}

	// The file layer too, and the answer is the server's report.
	env := addrEnv(t, "[server]\nport = "+u.Port()+"\n", nil)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"health", "-o", "json"}, env, strings.NewReader(""), &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), `"status": "healthy"`) {
		t.Errorf("saga health with server.port in the file: exit %d, %q, %q; want 0 and the report", code, stdout.String(), stderr.String())
	}
}
