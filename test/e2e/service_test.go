//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

const healthURL = "http://127.0.0.1:8030/api/v1/health"

// restartWithin bounds how long systemd may take to bring Saga back
// (RestartSec=2s plus start-up).
const restartWithin = 15 * time.Second

// mainPID is the service's main process as systemd sees it ("0" when none).
func mainPID(t *testing.T, m *Machine) string {
	t.Helper()
	return strings.TrimSpace(m.Run(t, "systemctl", "show", "--property=MainPID", "--value", "saga"))
}

func isActive(m *Machine) string {
	out, _, _ := m.Exec("systemctl", "is-active", "saga")
	return strings.TrimSpace(out)
}

func healthy(m *Machine) bool {
	out, _, err := m.Exec("curl", "-fsS", "--max-time", "5", healthURL)
	return err == nil && strings.Contains(out, `"status":"healthy"`)
}

func requireStatus(t *testing.T, m *Machine, wantCode int, wantText string, args ...string) {
	t.Helper()
	code, out, errOut := m.ExitCode(t, append([]string{"saga"}, args...)...)
	if code != wantCode || strings.TrimSpace(out) != wantText {
		t.Fatalf("saga %s: exit %d, %q (stderr %q); want exit %d, %q", strings.Join(args, " "), code, out, errOut, wantCode, wantText)
	}
}

func TestServiceLifecycle(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	requireStatus(t, m, 4, "not installed", "status")

	out := m.Run(t, "saga", "service", "install")
	if !strings.Contains(out, "/etc/systemd/system/saga.service") || !strings.Contains(out, "running") {
		t.Errorf("install said %q; want the unit's path and that it is running", out)
	}
	if got := isActive(m); got != "active" {
		t.Fatalf("after install, saga is %q; want active", got)
	}
	if !healthy(m) {
		t.Fatalf("after install, %s does not answer healthy", healthURL)
	}

	// The unit written is the unit shipped.
	shipped, err := os.ReadFile("../../init/saga.service")
	if err != nil {
		t.Fatal(err)
	}
	if written := m.ReadFile(t, "/etc/systemd/system/saga.service"); !bytes.Equal(written, shipped) {
		t.Errorf("installed unit differs from init/saga.service:\n%s", written)
	}
	if enabled := strings.TrimSpace(m.Run(t, "systemctl", "is-enabled", "saga")); enabled != "enabled" {
		t.Errorf("saga is %q at boot; want enabled", enabled)
	}

	// Unprivileged, with its state where StateDirectory= puts it.
	pid := mainPID(t, m)
	if owner := strings.TrimSpace(m.Run(t, "ps", "-o", "user=", "-p", pid)); owner != "saga" {
		t.Errorf("the service runs as %q; want saga", owner)
	}
	if owner := strings.TrimSpace(m.Run(t, "stat", "-c", "%U %a", "/var/lib/saga")); owner != "saga 700" {
		t.Errorf("/var/lib/saga is %q; want owned by saga, mode 700", owner)
	}
	// LimitNOFILE=65536 (clamped to what the container allows) instead of
	// the soft default of 1024: every watcher holds a connection.
	limits := strings.Fields(m.Run(t, "grep", "^Max open files", "/proc/"+pid+"/limits"))
	if len(limits) < 5 || limits[3] != limits[4] || limits[3] == "1024" {
		t.Errorf("the service's open-file limits (soft, hard) are %q; want LimitNOFILE= to raise both", limits)
	}
	requireStatus(t, m, 0, "running", "status")
	requireStatus(t, m, 0, "running", "service", "status")

	// A second install is refused: reinstall is the way to rewrite it.
	if code, _, errOut := m.ExitCode(t, "saga", "service", "install"); code == 0 || !strings.Contains(errOut, "reinstall") {
		t.Errorf("second install: exit %d, stderr %q; want a failure that points to reinstall", code, errOut)
	}

	// systemd brings a killed Saga back (Restart=on-failure).
	m.Run(t, "kill", "-9", pid)
	Eventually(t, restartWithin, "saga was not restarted after kill -9", func() bool {
		now, _, _ := m.Exec("systemctl", "show", "--property=MainPID", "--value", "saga")
		now = strings.TrimSpace(now)
		return isActive(m) == "active" && now != pid && now != "0" && healthy(m)
	})

	m.Run(t, "saga", "stop")
	if got := isActive(m); got != "inactive" {
		t.Fatalf("after saga stop, saga is %q; want inactive", got)
	}
	requireStatus(t, m, 3, "stopped", "status")

	m.Run(t, "saga", "start")
	if got := isActive(m); got != "active" || !healthy(m) {
		t.Fatalf("after saga start, saga is %q (healthy: %v); want active and healthy", got, healthy(m))
	}

	before := mainPID(t, m)
	m.Run(t, "saga", "restart")
	if after := mainPID(t, m); after == before || isActive(m) != "active" || !healthy(m) {
		t.Fatalf("saga restart: main PID %s -> %s, %q; want a new, active, healthy process", before, after, isActive(m))
	}

	// reinstall keeps a running service running.
	m.Run(t, "saga", "service", "reinstall")
	if got := isActive(m); got != "active" || !healthy(m) {
		t.Fatalf("after reinstall, saga is %q; want active and healthy", got)
	}

	m.Run(t, "saga", "service", "uninstall")
	if got := isActive(m); got == "active" {
		t.Fatalf("after uninstall, saga is still active")
	}
	if _, err := os.Stat(m.Root + "/etc/systemd/system/saga.service"); !os.IsNotExist(err) {
		t.Errorf("after uninstall the unit file is still there (stat: %v)", err)
	}
	requireStatus(t, m, 4, "not installed", "status")
}

func TestReloadChangesLogLevelInPlace(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	m.Run(t, "saga", "service", "install")
	pid := mainPID(t, m)

	m.WriteFile(t, "/etc/saga/config.toml", []byte("[log]\nlevel = \"debug\"\n"), 0o644)
	m.Run(t, "systemctl", "reload", "saga")
	Eventually(t, 10*time.Second, "the journal never showed the new log level", func() bool {
		out, _, _ := m.Exec("journalctl", "-u", "saga", "--no-pager", "-o", "cat")
		return strings.Contains(out, `"msg":"configuration reloaded","applied":["log.level"]`)
	})
	if now := mainPID(t, m); now != pid {
		t.Errorf("reload replaced the process (%s -> %s); SIGHUP must keep it", pid, now)
	}
	if got := isActive(m); got != "active" || !healthy(m) {
		t.Errorf("after reload saga is %q; want active and healthy", got)
	}
}

func TestSetupFromNothing(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	// contrib/setup.sh is the thin wrapper for those who expect a script.
	m.CopyIn(t, "../../contrib/setup.sh", "/root/setup.sh")
	out := m.Run(t, "sh", "/root/setup.sh", "--non-interactive", "--systemd")
	if !strings.Contains(out, "/etc/saga/config.toml") {
		t.Errorf("setup said %q; want it to name the config file it wrote", out)
	}
	if got := isActive(m); got != "active" || !healthy(m) {
		t.Fatalf("after setup, saga is %q; want active and healthy", got)
	}
	if owner := strings.TrimSpace(m.Run(t, "ps", "-o", "user=", "-p", mainPID(t, m))); owner != "saga" {
		t.Errorf("the service runs as %q; want saga", owner)
	}

	// Running setup again keeps the operator's configuration.
	edited := []byte("# edited by the operator\n[log]\nlevel = \"warn\"\n")
	m.WriteFile(t, "/etc/saga/config.toml", edited, 0o644)
	out = m.Run(t, "saga", "setup", "--non-interactive", "--systemd")
	if got := m.ReadFile(t, "/etc/saga/config.toml"); !bytes.Equal(got, edited) {
		t.Errorf("a second setup changed config.toml to:\n%s", got)
	}
	if !strings.Contains(out, "running already") {
		t.Errorf("second setup said %q; want it to notice the running service", out)
	}
}

func TestInstallEnablesPackagedUnit(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	m.CopyIn(t, "../../init/saga.service", "/usr/lib/systemd/system/saga.service")
	m.Run(t, "systemctl", "daemon-reload")

	out := m.Run(t, "saga", "service", "install")
	if !strings.Contains(out, "packaged unit /usr/lib/systemd/system/saga.service") {
		t.Errorf("install said %q; want it to enable the packaged unit", out)
	}
	if _, err := os.Stat(m.Root + "/etc/systemd/system/saga.service"); !os.IsNotExist(err) {
		t.Errorf("install wrote a second unit over the packaged one (stat: %v)", err)
	}
	if got := isActive(m); got != "active" || !healthy(m) {
		t.Fatalf("after install, saga is %q; want active and healthy", got)
	}

	m.Run(t, "saga", "service", "uninstall")
	if got := isActive(m); got == "active" {
		t.Fatal("after uninstall saga is still active")
	}
	if enabled, _, _ := m.Exec("systemctl", "is-enabled", "saga"); strings.TrimSpace(enabled) != "disabled" {
		t.Errorf("after uninstall the packaged unit is %q; want disabled", strings.TrimSpace(enabled))
	}
	if _, err := os.Stat(m.Root + "/usr/lib/systemd/system/saga.service"); err != nil {
		t.Errorf("uninstall removed the package's unit: %v", err)
	}
}

func TestInstallRefusals(t *testing.T) {
	m := bootDebian(t)
	m.InstallSaga(t)
	code, _, errOut := m.ExitCode(t, "runuser", "-u", "nobody", "--", "saga", "service", "install")
	if code == 0 || !strings.Contains(errOut, "sudo saga service install") || !strings.Contains(errOut, "--user") {
		t.Errorf("install as nobody: exit %d, stderr %q; want a refusal pointing to sudo and --user", code, errOut)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("the refusal is not one line: %q", errOut)
	}

	// A binary under a home directory cannot run under ProtectHome=yes.
	m.CopyIn(t, sagaBinary, "/root/saga")
	code, _, errOut = m.ExitCode(t, "/root/saga", "service", "install")
	if code == 0 || !strings.Contains(errOut, "ProtectHome") {
		t.Errorf("install from /root: exit %d, stderr %q; want a refusal naming ProtectHome", code, errOut)
	}
	requireStatus(t, m, 4, "not installed", "status")
}
