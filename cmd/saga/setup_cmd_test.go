package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/osservice"
)

// ownExecutable is the running test binary, symlinks resolved, as setup
// sees itself.
func ownExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatal(err)
	}
	return exe
}

// realDir is a temp dir with its symlinks resolved, as setup reports paths.
func realDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSetupInstallsThisBinary is the old guide's promise: setup run from a
// downloaded binary puts that binary on the PATH.
func TestSetupInstallsThisBinary(t *testing.T) {
	self := ownExecutable(t)
	binDir := filepath.Join(realDir(t), "bin") // not there yet
	target := filepath.Join(binDir, "saga")
	env := map[string]string{"HOME": t.TempDir(), "SAGA_CONFIG_DIR": t.TempDir(), "PATH": binDir}

	stdout, stderr, code := runInProcess(t, env, "setup", "--no-service", "--non-interactive", "--bin-dir", binDir)
	if code != 0 || !strings.Contains(stdout, "Installed this saga as "+target+".\n") {
		t.Fatalf("setup: exit %d, %q %q; want it to say it installed %s", code, stdout, stderr, target)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is not a copy of the running saga (%v)", target, err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v, mode %v; want 0755", target, err, fi.Mode().Perm())
	}

	// Run again with the target off the PATH: the copy is refreshed, and
	// setup says how to reach it.
	env["PATH"] = t.TempDir()
	stdout, _, code = runInProcess(t, env, "setup", "--no-service", "--non-interactive", "--bin-dir", binDir)
	if wantLine := "Installed this saga as " + target + "; add " + binDir + " to PATH to run it as `saga`.\n"; code != 0 || !strings.Contains(stdout, wantLine) {
		t.Fatalf("setup: exit %d, %q; want %q", code, stdout, wantLine)
	}
}

func TestSetupKeepsTheInstalledBinary(t *testing.T) {
	self := ownExecutable(t)
	pathDir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(pathDir, "saga")); err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	env := map[string]string{"HOME": t.TempDir(), "SAGA_CONFIG_DIR": t.TempDir(), "PATH": pathDir}

	stdout, stderr, code := runInProcess(t, env, "setup", "--no-service", "--non-interactive", "--bin-dir", binDir)
	if wantLine := "This saga is the installed one (" + self + "); nothing to copy.\n"; code != 0 || !strings.Contains(stdout, wantLine) {
		t.Fatalf("setup: exit %d, %q %q; want %q", code, stdout, stderr, wantLine)
	}
	if _, err := os.Stat(binDir); !os.IsNotExist(err) {
		t.Errorf("setup created %s (%v); the saga on PATH is this one, nothing to copy", binDir, err)
	}
}

// setupApp is an app over env whose output the test reads, with a Host of
// a user (uid 1000) running exe: the tests' own uid may be root's.
func setupApp(env map[string]string, exe string) (*app, osservice.Host, *bytes.Buffer) {
	var out bytes.Buffer
	a := &app{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &out}
	host := osservice.Host{GOOS: "linux", Euid: 1000, Executable: exe, Getenv: a.getenv,
		ReadFile: os.ReadFile, Exists: func(string) bool { return false }}
	return a, host, &out
}

func writeExecutable(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestSetupPutsAUsersBinaryInLocalBin(t *testing.T) {
	home := realDir(t)
	exe := filepath.Join(realDir(t), "Downloads", "saga")
	writeExecutable(t, exe)
	a, host, out := setupApp(map[string]string{"HOME": home, "PATH": "/usr/bin:/bin"}, exe)

	path, copied, err := a.placeBinary(host, "")
	localBin := filepath.Join(home, ".local", "bin")
	want := filepath.Join(localBin, "saga")
	if err != nil || path != want || !copied {
		t.Fatalf("placeBinary = %q, %v, %v; want %s copied", path, copied, err, want)
	}
	if wantLine := "Installed this saga as " + want + "; add " + localBin + " to PATH to run it as `saga`.\n"; out.String() != wantLine {
		t.Fatalf("setup said %q, want %q", out, wantLine)
	}
}

func TestSetupLeavesAPackageManagersSaga(t *testing.T) {
	brew := realDir(t)
	brewed := filepath.Join(brew, "bin", "saga")
	writeExecutable(t, brewed)
	exe := filepath.Join(realDir(t), "saga")
	writeExecutable(t, exe)
	home := realDir(t)
	a, host, out := setupApp(map[string]string{"HOME": home, "PATH": filepath.Dir(brewed), "HOMEBREW_PREFIX": brew}, exe)

	path, copied, err := a.placeBinary(host, "")
	if err != nil || path != exe || copied {
		t.Fatalf("placeBinary = %q, %v, %v; want the running saga, nothing copied", path, copied, err)
	}
	if wantLine := "Not copying this saga: PATH finds " + brewed + ", which a package manager installed and keeps up to date.\n"; out.String() != wantLine {
		t.Fatalf("setup said %q, want %q", out, wantLine)
	}
	if _, err := os.Stat(filepath.Join(home, ".local")); !os.IsNotExist(err) {
		t.Errorf("setup wrote under %s/.local (%v)", home, err)
	}
}
