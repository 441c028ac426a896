//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/osservice"
)

// asUser runs a command as the user alice inside her systemd session.
func asUser(args ...string) []string {
	return append([]string{"runuser", "-u", "alice", "--", "env", "HOME=/home/alice", "XDG_RUNTIME_DIR=/run/user/1000"}, args...)
}

func TestUserService(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	m.Run(t, "useradd", "--create-home", "--uid", "1000", "alice")
	// Lingering starts alice's service manager without a login.
	m.Run(t, "loginctl", "enable-linger", "alice")
	Eventually(t, 30*time.Second, "alice's service manager did not start", func() bool {
		out, _, _ := m.Exec(asUser("systemctl", "--user", "is-system-running")...)
		state := strings.TrimSpace(out)
		return state == "running" || state == "degraded"
	})

	out := m.Run(t, asUser("saga", "service", "install", "--user")...)
	if !strings.Contains(out, "/home/alice/.config/systemd/user/saga.service") {
		t.Errorf("install --user said %q; want the user unit's path", out)
	}
	want, err := osservice.SystemdUserUnit(osservice.DefaultCommand())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.ReadFile(t, "/home/alice/.config/systemd/user/saga.service"); !bytes.Equal(got, []byte(want)) {
		t.Errorf("the user unit written differs from the rendered one:\n%s", got)
	}
	if !healthy(m) {
		t.Fatal("the user service does not answer healthy")
	}
	code, stdout, stderr := m.ExitCode(t, asUser("saga", "status", "--user")...)
	if code != 0 || strings.TrimSpace(stdout) != "running" {
		t.Fatalf("saga status --user: exit %d, %q %q; want running", code, stdout, stderr)
	}
	pid := strings.TrimSpace(m.Run(t, asUser("systemctl", "--user", "show", "--property=MainPID", "--value", "saga")...))
	if owner := strings.TrimSpace(m.Run(t, "ps", "-o", "user=", "-p", pid)); owner != "alice" {
		t.Errorf("the user service runs as %q; want alice", owner)
	}
	// The system service is a different thing and is not installed.
	requireStatus(t, m, 4, "not installed", "status")

	m.Run(t, asUser("saga", "service", "uninstall", "--user")...)
	if _, err := os.Stat(m.Root + "/home/alice/.config/systemd/user/saga.service"); !os.IsNotExist(err) {
		t.Errorf("after uninstall --user the unit is still there (stat: %v)", err)
	}
	if healthy(m) {
		t.Error("after uninstall --user Saga still answers")
	}
}
