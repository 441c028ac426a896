package osservice

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	initfiles "github.com/sagaproject/saga/init"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const shippedUnit = "../../init/saga.service"

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered text (go test -update rewrites it):\n%s", path, got)
	}
}

func TestDefaultUnitIsTheShippedUnit(t *testing.T) {
	shipped, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	got, err := SystemdUnit(DefaultCommand())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(got), shipped) || initfiles.SystemdUnit() != string(shipped) {
		t.Errorf("`saga service install` would write a unit that differs from init/saga.service:\n%s", got)
	}
	// kardianos/service renders SystemdScript as a template: text without
	// actions passes through unchanged.
	if strings.Contains(got, "{{") {
		t.Error("the unit contains template syntax")
	}
}

func TestUnitGolden(t *testing.T) {
	custom := Command{Executable: "/opt/saga 2/bin/saga", Args: []string{"serve", "--config", "/etc/saga/other.toml", "--port", "9000", "--log-level", "50%$x"}}
	unit, err := SystemdUnit(custom)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "custom.service", unit)

	user, err := SystemdUserUnit(Command{Executable: "/usr/local/bin/saga", Args: []string{"serve"}})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "user.service", user)
	for _, line := range []string{"User=", "ProtectSystem=", "EnvironmentFile=", "multi-user.target"} {
		if strings.Contains(user, line) {
			t.Errorf("the user unit has %q, which a user's service manager cannot honour", line)
		}
	}
	if !strings.Contains(user, "WantedBy=default.target\n") || !strings.Contains(user, "Type=notify\n") {
		t.Error("the user unit must be Type=notify and wanted by default.target")
	}
}

func TestExecStartRefusesBadCommands(t *testing.T) {
	for _, cmd := range []Command{
		{Executable: "saga", Args: []string{"serve"}},
		{Executable: "/usr/bin/saga", Args: []string{"serve", "--config", "a\nExecStartPre=/bin/rm"}},
		{Executable: "/usr/bin/saga", Args: []string{"serve", "--config", "{{Path}}"}},
	} {
		if _, err := SystemdUnit(cmd); err == nil {
			t.Errorf("SystemdUnit(%q) = nil error; want a refusal", cmd)
		}
	}
	_, err := SystemdUnit(Command{Executable: "/usr/bin/saga", Args: []string{"{{x}}"}})
	if !errors.Is(err, errTemplateSyntax) {
		t.Errorf("template syntax: got %v, want errTemplateSyntax", err)
	}
}

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"serve":             "serve",
		"/etc/saga/a.toml":  "/etc/saga/a.toml",
		"a b":               `"a b"`,
		`say "hi"`:          `"say \"hi\""`,
		"100%":              "100%%",
		"$HOME":             "$$HOME",
		"":                  `""`,
		`C:\saga`:           `"C:\\saga"`,
		"semi;colon":        `"semi;colon"`,
		"it's":              `"it's"`,
		"--port=8030":       "--port=8030",
		"redis://h:6379/0":  "redis://h:6379/0",
		"redis://u:p@h/0?x": "redis://u:p@h/0?x",
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestSystemdAcceptsTheUnits has systemd itself parse the units. verify
// checks that ExecStart is executable, so the copy runs this test binary.
func TestSystemdAcceptsTheUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	system, err := SystemdUnit(Command{Executable: self, Args: []string{"serve"}})
	if err != nil {
		t.Fatal(err)
	}
	user, err := SystemdUserUnit(Command{Executable: self, Args: []string{"serve"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, unit := range map[string]string{"system": system, "user": user} {
		dir := t.TempDir()
		path := filepath.Join(dir, "saga.service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify on the %s unit: %v\n%s", name, err, out)
		}
	}
}

// maxExposure is SPEC §5's bound on `systemd-analyze security`.
const maxExposure = 1.2

var exposureLine = regexp.MustCompile(`Overall exposure level for saga\.service: ([0-9.]+)`)

func TestUnitSecurityScore(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", shippedUnit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	if score > maxExposure {
		t.Errorf("init/saga.service scores %.1f, above %.1f:\n%s", score, maxExposure, out)
	}
	t.Logf("systemd-analyze security: %.1f", score)
}

// requireTool finds a program the test cannot do without.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed for this test (Debian package systemd): %v", name, err)
	}
	return path
}
