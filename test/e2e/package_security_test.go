//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/tlsfiles/tlsfilestest"
)

// The operator's files: the certificate and key the service reads, and the
// CA a client trusts (kept out of /etc/saga, as a client's would be).
const (
	tlsDir   = "/etc/saga/tls"
	certFile = tlsDir + "/cert.pem"
	keyFile  = tlsDir + "/key.pem"
	caFile   = "/root/saga-ca.pem"
	httpsAPI = "https://127.0.0.1:8030"
)

// securePackagedService does what docs/security.md tells an operator to do
// to a packaged Saga that runs as installed (auth off, plain HTTP on
// 127.0.0.1:8030): make the first admin token, put a certificate under
// /etc/saga/tls, turn on TLS and auth in /etc/saga/config.toml, and
// reload. The process must not restart, nothing registered may be lost,
// and the token must outlive a restart.
func securePackagedService(t *testing.T, m *Machine) {
	// A TTL of an hour, so that only a lost write, never an expiry, could
	// take the instance away before the end.
	m.Run(t, "saga", "register", "web", "--id", "web-1", "--address", "10.0.0.5", "--port", "8080", "--ttl", "1h")

	// Bootstrap is answered on loopback only: here, inside the machine.
	var token struct{ Accessor, Secret string }
	out := m.Run(t, "saga", "token", "bootstrap", "-o", "json")
	if err := json.Unmarshal([]byte(out), &token); err != nil || !strings.HasPrefix(token.Secret, "saga_") {
		t.Fatalf("saga token bootstrap -o json printed %q (%v); want an accessor and a saga_ secret", out, err)
	}

	// The key is readable by the service through its group, by no one else.
	ca := tlsfilestest.NewCA(t, "saga e2e CA")
	server := ca.Server(t, "saga e2e")
	m.WriteFile(t, "/root/cert.pem", server.CertPEM, 0o600)
	m.WriteFile(t, "/root/key.pem", server.KeyPEM, 0o600)
	m.WriteFile(t, caFile, ca.PEM, 0o644)
	m.Run(t, "install", "-d", "-o", "root", "-g", "saga", "-m", "0750", tlsDir)
	m.Run(t, "install", "-o", "root", "-g", "saga", "-m", "0640", "/root/cert.pem", "/root/key.pem", tlsDir)
	m.Run(t, "rm", "/root/cert.pem", "/root/key.pem")
	if got := m.Run(t, "stat", "-c", "%n %U:%G %a", tlsDir, certFile, keyFile); got !=
		tlsDir+" root:saga 750\n"+certFile+" root:saga 640\n"+keyFile+" root:saga 640\n" {
		t.Fatalf("the TLS files are\n%s", got)
	}

	conf := string(m.ReadFile(t, "/etc/saga/config.toml"))
	conf = setKey(t, conf, "server.tls", "cert_file", `"`+certFile+`"`)
	conf = setKey(t, conf, "server.tls", "key_file", `"`+keyFile+`"`)
	conf = setKey(t, conf, "auth", "enabled", "true")
	m.WriteFile(t, "/etc/saga/config.toml", []byte(conf), 0o644)

	pid := mainPID(t, m)
	m.Run(t, "systemctl", "reload", "saga")
	// ExecReload only sends SIGHUP, so the reload is done when it logs so.
	var reloads []map[string]any
	Eventually(t, 10*time.Second, "the journal never said \"configuration reloaded\"", func() bool {
		reloads = journalRecords(t, m, pid, "configuration reloaded")
		return len(reloads) > 0
	})
	time.Sleep(time.Second) // room for a second line, which would be a bug
	reloads = journalRecords(t, m, pid, "configuration reloaded")
	want := []string{"auth.enabled", "server.tls.cert_file", "server.tls.key_file"}
	if len(reloads) != 1 || !sameKeys(reloads[0]["applied"], want) {
		t.Fatalf("the journal has %d \"configuration reloaded\" lines: %v; want one that applied %v\n%s",
			len(reloads), reloads, want, journal(m, pid))
	}
	if restart := journalRecords(t, m, pid, "configuration changed; these settings take effect after a restart"); len(restart) > 0 {
		t.Errorf("the reload asks for a restart: %v", restart)
	}
	if got := isActive(m); got != "active" {
		t.Fatalf("after the reload saga is %q; want active", got)
	}
	if now := mainPID(t, m); now != pid {
		t.Fatalf("the reload replaced the process (%s -> %s); SIGHUP must keep it", pid, now)
	}

	// Without a token: 401, said in one line that names the token.
	code, out, errOut := m.ExitCode(t, "env", "SAGA_ADDR="+httpsAPI, "SAGA_CACERT="+caFile, "saga", "services")
	if msg := strings.TrimSpace(errOut); code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "token") || !strings.Contains(msg, "unauthenticated") {
		t.Errorf("saga services over https without a token: exit %d, stdout %q, stderr %q; want exit 1 and one line about the missing token", code, out, errOut)
	}
	// With the admin token, the instance registered before is still there.
	if out := servicesWith(t, m, token.Secret); !listsWeb(out) {
		t.Errorf("saga services over https with the admin token:\n%s\nwant web with its one instance", out)
	}
	// Plain HTTP no longer reaches the API: Go's TLS server answers it 400.
	if status := m.Run(t, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
		"http://127.0.0.1:8030/api/v1/services"); status != "400" {
		t.Errorf("plain http after the reload answered %s; want 400", status)
	}
	// The HEALTHCHECK's way: no SAGA_ADDR, so the CLI reads
	// /etc/saga/config.toml, asks over https and trusts cert.pem itself,
	// which root can read (mode 0640, owner root).
	if code, out, errOut := m.ExitCode(t, "saga", "health", "--quiet"); code != 0 {
		t.Errorf("saga health --quiet as root: exit %d, %q %q; want 0", code, out, errOut)
	}

	// Tokens and instances are kept in /var/lib/saga.
	m.Run(t, "systemctl", "restart", "saga")
	if now := mainPID(t, m); now == pid || now == "0" {
		t.Fatalf("systemctl restart left the main process at %s (was %s)", now, pid)
	}
	Eventually(t, restartWithin, "the admin token no longer lists web after a restart", func() bool {
		return listsWeb(servicesWith(t, m, token.Secret))
	})
}

// servicesWith runs `saga services` over https with the token, and returns
// what it printed ("" when it failed).
func servicesWith(t *testing.T, m *Machine, secret string) string {
	t.Helper()
	code, out, _ := m.ExitCode(t, "env", "SAGA_ADDR="+httpsAPI, "SAGA_CACERT="+caFile, "SAGA_TOKEN="+secret, "saga", "services")
	if code != 0 {
		return ""
	}
	return out
}

// listsWeb tells whether a `saga services` table has web with one instance.
func listsWeb(table string) bool {
	for line := range strings.Lines(table) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "web" && f[1] == "1" {
			return true
		}
	}
	return false
}

// setKey gives key in [table] a value, taking out the "# " that the shipped
// config.toml puts before every key.
func setKey(t *testing.T, conf, table, key, value string) string {
	t.Helper()
	lines := strings.Split(conf, "\n")
	in := false
	for i, line := range lines {
		if strings.HasPrefix(line, "[") {
			in = line == "["+table+"]"
		} else if in && strings.HasPrefix(line, "# "+key+" = ") {
			lines[i] = key + " = " + value
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("config.toml has no commented-out %s in [%s]", key, table)
	return ""
}

// journal is what the process pid of saga.service logged.
func journal(m *Machine, pid string) string {
	out, _, _ := m.Exec("journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_UNIT=saga.service", "_PID="+pid)
	return out
}

// journalRecords returns the JSON log records of process pid with message msg.
func journalRecords(t *testing.T, m *Machine, pid, msg string) []map[string]any {
	t.Helper()
	var found []map[string]any
	for line := range strings.Lines(journal(m, pid)) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			found = append(found, rec)
		}
	}
	return found
}

// sameKeys tells whether a logged list of keys holds want, in any order.
func sameKeys(logged any, want []string) bool {
	list, _ := logged.([]any)
	got := make([]string, 0, len(list))
	for _, k := range list {
		s, _ := k.(string)
		got = append(got, s)
	}
	slices.Sort(got)
	return slices.Equal(got, want)
}
