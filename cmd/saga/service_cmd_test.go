package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/osservice"
)

func TestCarriedArgs(t *testing.T) {
	fs := pflag.NewFlagSet("install", pflag.ContinueOnError)
	fs.Bool("user", false, "")
	config.BindFlags(fs)
	if err := fs.Parse([]string{"--user", "--config", "saga.toml", "--port", "9000", "--redis-url", "redis://h:6379/0"}); err != nil {
		t.Fatal(err)
	}
	got, err := carriedArgs(fs)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("saga.toml")
	want := []string{"--config", abs, "--port", "9000", "--redis-url", "redis://h:6379/0"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("carriedArgs = %q, want %q", got, want)
	}
}

func TestStatusExitCodes(t *testing.T) {
	for state, want := range map[osservice.State]int{
		osservice.StateRunning: 0, osservice.StateStopped: 3, osservice.StateNotInstalled: 4,
	} {
		err := statusExit(state)
		var exit *exitError
		switch {
		case want == 0 && err != nil:
			t.Errorf("%v: got %v, want success", state, err)
		case want != 0 && (!errors.As(err, &exit) || exit.code != want):
			t.Errorf("%v: got %v, want exit status %d", state, err, want)
		}
	}
}

func TestInstallRejectsBadFlagsFirst(t *testing.T) {
	env := map[string]string{"HOME": t.TempDir(), "SAGA_CONFIG_DIR": t.TempDir()}
	_, stderr, code := runInProcess(t, env, "service", "install", "--port", "70000")
	if code == 0 || !strings.Contains(stderr, "server.port") || !strings.Contains(stderr, "70000") {
		t.Errorf("install --port 70000: exit %d, %q; want an error naming server.port and the value", code, stderr)
	}
	_, stderr, code = runInProcess(t, env, "setup", "--systemd", "--launchd")
	if code == 0 || !strings.Contains(stderr, "systemd") {
		t.Errorf("setup --systemd --launchd: exit %d, %q; want a refusal", code, stderr)
	}
}

func TestSetupWritesConfigOnceAndKeepsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc-saga")
	env := map[string]string{"HOME": t.TempDir(), "SAGA_CONFIG_DIR": dir}
	binDir := t.TempDir() // never the machine's own
	stdout, stderr, code := runInProcess(t, env, "setup", "--no-service", "--non-interactive", "--bin-dir", binDir)
	file := filepath.Join(dir, "config.toml")
	if code != 0 || !strings.Contains(stdout, "Created "+file) {
		t.Fatalf("setup: exit %d, %q %q; want it to create %s", code, stdout, stderr, file)
	}
	if _, err := config.Load(config.Options{Getenv: func(k string) string { return env[k] }}); err != nil {
		t.Errorf("the config.toml setup wrote does not load: %v", err)
	}
	edited := []byte("[server]\nport = 9000\n")
	if err := os.WriteFile(file, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = runInProcess(t, env, "setup", "--no-service", "--non-interactive", "--bin-dir", binDir)
	if got, _ := os.ReadFile(file); code != 0 || string(got) != string(edited) || !strings.Contains(stdout, "Kept the existing") {
		t.Errorf("second setup: exit %d, %q, file now %q; want the operator's file kept", code, stdout, got)
	}
}

// TestOtherPlatformsBuild compiles saga for the service managers this
// machine does not run: launchd (macOS) and the Windows service manager.
func TestOtherPlatformsBuild(t *testing.T) {
	for _, target := range []string{"darwin/arm64", "windows/amd64"} {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go build: %v\n%s", goos, goarch, err, out)
		}
	}
}

func TestLaunchdJobGetsTheSagaEnvironment(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://h:6379/0", "SAGA_LOG_LEVEL": "debug", "SAGA_CONFIG_DIR": "/etc/saga", "PATH": "/usr/bin", "SECRET_OTHER": "x"}
	a := &app{getenv: func(k string) string { return env[k] }}
	got := map[string]string{}
	for _, v := range a.sagaEnvironment() {
		got[v.Name] = v.Value
	}
	want := map[string]string{"REDIS_URL": "redis://h:6379/0", "SAGA_LOG_LEVEL": "debug", "SAGA_CONFIG_DIR": "/etc/saga"}
	if len(got) != len(want) {
		t.Errorf("sagaEnvironment = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("sagaEnvironment[%s] = %q, want %q", k, got[k], v)
		}
	}
}
