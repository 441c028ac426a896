package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

// Protected mode seen from another machine: the test makes its own network
// namespace joined to this one by a veth pair, and runs the saga CLI and
// curl inside it, so that Saga sees a client that is not on loopback.

// otherMachine is a network namespace with an address that reaches this
// one at hostIP.
type otherMachine struct {
	name   string
	hostIP string
}

func newOtherMachine(t *testing.T) *otherMachine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to make a network namespace")
	}
	// Names and a /30 unique to this process, so parallel runs do not meet.
	id := os.Getpid() % 16000
	m := &otherMachine{
		name:   fmt.Sprintf("saga-test-%d", id),
		hostIP: fmt.Sprintf("10.%d.%d.1", 200+id/4000%50, id%4000/16*4%256),
	}
	peerIP := strings.TrimSuffix(m.hostIP, ".1") + ".2"
	hostEnd, peerEnd := fmt.Sprintf("sgh%d", id), fmt.Sprintf("sgp%d", id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", m.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostEnd).Run()
		_ = exec.Command("ip", "netns", "del", m.name).Run()
	})
	run("link", "add", hostEnd, "type", "veth", "peer", "name", peerEnd)
	run("link", "set", peerEnd, "netns", m.name)
	run("addr", "add", m.hostIP+"/30", "dev", hostEnd)
	run("link", "set", hostEnd, "up")
	run("-n", m.name, "addr", "add", peerIP+"/30", "dev", peerEnd)
	run("-n", m.name, "link", "set", peerEnd, "up")
	run("-n", m.name, "link", "set", "lo", "up")
	return m
}

// dig asks the DNS server at host:port for name's A records from inside
// the namespace and returns dig's output.
func (m *otherMachine) dig(t *testing.T, host string, port int, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", m.name, "dig", "@"+host, "-p", fmt.Sprint(port),
		"+tries=1", "+time=3", name, "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s from the other machine: %v\n%s", name, err, out)
	}
	return string(out)
}

// curl sends method url from inside the namespace and returns the status and body.
func (m *otherMachine) curl(t *testing.T, method, url string, header ...string) (int, string) {
	t.Helper()
	args := []string{"netns", "exec", m.name, "curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", "-X", method}
	for _, h := range header {
		args = append(args, "-H", h)
	}
	out, err := exec.Command("ip", append(args, url)...).Output()
	if err != nil {
		t.Fatalf("curl %s from the other machine: %v", url, err)
	}
	text := string(out)
	i := strings.LastIndex(text, "\n")
	return e2eAtoi(t, strings.TrimSpace(text[i+1:])), text[:max(i, 0)]
}

func TestProtectedModeFromAnotherMachine(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed; the test set-up installs it")
	}
	m := newOtherMachine(t)
	configDir := t.TempDir()
	file := filepath.Join(configDir, "config.toml")
	dnsPort := asynctest.FreePort(t)
	// Every version of the file also serves DNS, which follows protected
	// mode as the API does.
	write := func(text string) {
		t.Helper()
		text = "[server]\nhost = \"0.0.0.0\"\n" + text + fmt.Sprintf("[dns]\nport = %d\n", dnsPort)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	p := startSaga(t, sagaEnv(t, "SAGA_CONFIG_DIR="+configDir, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	if _, err := p.logs.WaitRecord("protected mode: auth is off, so only clients on this machine are answered; turn auth on (auth.enabled) or set server.protected_mode = false", 5*time.Second, p.exited); err != nil {
		t.Errorf("no word of protected mode at start: %v", err)
	}
	_, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	remote := "http://" + net.JoinHostPort(m.hostIP, port)

	// From this machine: answered.
	e2eRegister(t, p, "web", "web-1", 3600)
	// From the other machine: refused, naming the two ways out, but the
	// probes answer.
	status, body := m.curl(t, "GET", remote+"/api/v1/services")
	if status != 403 || !strings.Contains(body, "auth.enabled") || !strings.Contains(body, "server.protected_mode") {
		t.Fatalf("catalogue from another machine in protected mode: %d %s", status, body)
	}
	for _, path := range []string{"/livez", "/readyz", "/api/v1/health", "/api/v1/services/web/health"} {
		if status, body := m.curl(t, "GET", remote+path); status != 200 {
			t.Errorf("probe %s from another machine: %d %s", path, status, body)
		}
	}
	// DNS, which carries no token, refuses the other machine too.
	if out := m.dig(t, m.hostIP, dnsPort, "web.service.saga."); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("DNS from another machine in protected mode:\n%s", out)
	}

	// The first admin token cannot be taken over the network.
	if status, body := m.curl(t, "POST", remote+"/api/v1/tokens/bootstrap"); status != 403 || !strings.Contains(body, "loopback") {
		t.Errorf("bootstrap from another machine: %d %s", status, body)
	}

	// Auth on, by reload: the other machine gets in with a token only.
	_, admin := newToken(t, p, "", "bootstrap")
	write("[auth]\nenabled = true\n")
	p.signal(syscall.SIGHUP)
	asynctest.Eventually(t, 5*time.Second, "auth to be on", func() error {
		if status, _ := m.curl(t, "GET", remote+"/api/v1/services"); status != 401 {
			return fmt.Errorf("no token from another machine: %d, want 401", status)
		}
		return nil
	})
	if status, body := m.curl(t, "GET", remote+"/api/v1/services/web", "Authorization: Bearer "+admin); status != 200 || !strings.Contains(body, "web-1") {
		t.Fatalf("token from another machine: %d %s", status, body)
	}
	// With auth on, DNS answers whoever reaches its port (it has no
	// tokens): where it listens is the operator's control.
	if out := m.dig(t, m.hostIP, dnsPort, "web.service.saga."); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "10.0.0.1") {
		t.Errorf("DNS from another machine with auth on:\n%s", out)
	}

	// Auth off and protected mode off, by reload: anyone is answered.
	write("protected_mode = false\n")
	p.signal(syscall.SIGHUP)
	asynctest.Eventually(t, 5*time.Second, "protected mode to be off", func() error {
		if status, body := m.curl(t, "GET", remote+"/api/v1/services/web"); status != 200 {
			return fmt.Errorf("from another machine without protected mode: %d %s", status, body)
		}
		return nil
	})
}
