//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment that tunes the harness.
const (
	envBinary = "SAGA_E2E_BINARY" // a prebuilt saga for linux/amd64; built from ./cmd/saga when unset
	envCache  = "SAGA_E2E_CACHE"  // where the Debian root file system is kept (default /var/cache/saga-e2e)
	envMirror = "SAGA_E2E_MIRROR" // Debian mirror for debootstrap
)

const (
	suite          = "bookworm"
	defaultMirror  = "http://deb.debian.org/debian"
	defaultCache   = "/var/cache/saga-e2e"
	bootTimeout    = 90 * time.Second
	commandTimeout = 3 * time.Minute
)

// rootPackages are installed into the cached root file system on top of
// debootstrap's minimal base: an init, a bus, user sessions (libpam-systemd,
// for `--user` services), and tools the tests use. The cache is keyed on
// this list, so changing it builds a new root file system.
var rootPackages = []string{"systemd", "systemd-sysv", "dbus", "libpam-systemd", "curl", "ca-certificates", "procps"}

// sagaBinary is the saga executable under test; set by TestMain.
var sagaBinary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests boot containers and must run as root (sudo make e2e)")
		return 1
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is missing: `make e2e` installs debootstrap and systemd-container\n", tool)
			return 1
		}
	}
	sagaBinary = os.Getenv(envBinary)
	if sagaBinary == "" {
		dir, err := os.MkdirTemp("", "saga-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		sagaBinary = filepath.Join(dir, "saga")
		build := exec.Command("go", "build", "-trimpath", "-o", sagaBinary, "github.com/sagaproject/saga/cmd/saga")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build saga: %v\n%s", err, out)
			return 1
		}
	}
	if _, err := cachedRootfs(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// cachedRootfs returns the Debian root file system, building it with
// debootstrap the first time. It is built under a temporary name and
// renamed when complete, so an interrupted build is never used.
func cachedRootfs() (string, error) {
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = defaultCache
	}
	sum := sha256.Sum256([]byte(strings.Join(rootPackages, ",")))
	root := filepath.Join(cache, suite+"-"+hex.EncodeToString(sum[:4]))
	if _, err := os.Stat(filepath.Join(root, "usr", "lib", "systemd", "systemd")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	// One build at a time, even across concurrent test runs.
	lock, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("lock cache: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock cache: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr", "lib", "systemd", "systemd")); err == nil {
		return root, nil // another run built it while we waited
	}
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("remove stale build: %w", err)
	}
	mirror := os.Getenv(envMirror)
	if mirror == "" {
		mirror = defaultMirror
	}
	fmt.Fprintf(os.Stderr, "e2e: building the Debian %s root file system in %s (once; takes a few minutes)\n", suite, root)
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(rootPackages, ","), suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap: %w\n%s", err, tail(out, 2000))
	}
	if err := os.RemoveAll(root); err != nil {
		return "", fmt.Errorf("replace root file system: %w", err)
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("finish root file system: %w", err)
	}
	return root, nil
}

// Machine is a booted Debian container.
type Machine struct {
	Name string
	Root string // the container's / on the host
	pid  int    // the container's init, as the host sees it
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// bootDebian boots a fresh copy of the cached Debian under systemd-nspawn
// and waits until systemd has finished starting up. The machine is powered
// off and its copy removed when the test ends.
func bootDebian(t *testing.T) *Machine {
	t.Helper()
	rootfs, err := cachedRootfs()
	if err != nil {
		t.Fatal(err)
	}
	m := &Machine{Name: "saga-e2e-" + randomHex(4), Root: filepath.Join(t.TempDir(), "root"), log: &bytes.Buffer{}}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", rootfs, m.Root).CombinedOutput(); err != nil {
		t.Fatalf("copy root file system: %v: %s", err, out)
	}
	m.cmd = exec.Command("systemd-nspawn", "--register=no", "--keep-unit", "--quiet",
		"--console=passive", "--boot", "--directory="+m.Root, "--machine="+m.Name)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	t.Cleanup(func() { m.powerOff(t, exited) })

	deadline := time.Now().Add(bootTimeout)
	for m.pid == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("container init did not appear; nspawn said:\n%s", m.log)
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, m.log)
		case <-time.After(100 * time.Millisecond):
		}
		m.pid = childOf(m.cmd.Process.Pid)
	}
	var state string
	for time.Now().Before(deadline) {
		state, _, _ = m.Exec("systemctl", "is-system-running")
		state = strings.TrimSpace(state)
		if state == "running" || state == "degraded" {
			return m
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("container did not finish booting: systemctl is-system-running says %q", state)
	return nil
}

// powerOff asks the container to shut down (nspawn turns SIGTERM into a
// clean poweroff) and kills it if it does not within half a minute.
func (m *Machine) powerOff(t *testing.T, exited chan error) {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Logf("container %s did not power off; killing it", m.Name)
		_ = m.cmd.Process.Kill()
		<-exited
	}
}

// childOf returns the first child process of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	child, _ := strconv.Atoi(fields[0])
	return child
}

// Exec runs a command inside the machine, as root, with a clean
// environment. It returns stdout, stderr and an error that is an
// *exec.ExitError when the command ran and failed.
func (m *Machine) Exec(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(m.pid), "--all", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "TERM=dumb"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// Run runs a command inside the machine and fails the test unless it
// succeeds. It returns stdout.
func (m *Machine) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := m.Exec(args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v\nstdout: %s\nstderr: %s", m.Name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// ExitCode runs a command inside the machine and returns its exit status
// with its stdout and stderr; it fails the test only when the command could
// not be run at all.
func (m *Machine) ExitCode(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	out, errOut, err := m.Exec(args...)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out, errOut
	case errors.As(err, &exit):
		return exit.ExitCode(), out, errOut
	}
	t.Fatalf("in %s: %s: %v", m.Name, strings.Join(args, " "), err)
	return -1, "", ""
}

// CopyIn copies a host file to dst inside the machine, keeping its mode.
// dst must be on the container's disk: its /tmp and /run are tmpfs mounts
// the host cannot see, so use /root or /usr/local.
func (m *Machine) CopyIn(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatalf("copy in: %v", err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		t.Fatalf("copy in: %v", err)
	}
	target := filepath.Join(m.Root, dst)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatalf("copy in: %v", err)
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		t.Fatalf("copy in: %v", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatalf("copy in %s: %v", dst, err)
	}
	if err := out.Close(); err != nil {
		t.Fatalf("copy in %s: %v", dst, err)
	}
}

// ReadFile reads a file inside the machine (from its disk, not its tmpfs).
func (m *Machine) ReadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.Root, name))
	if err != nil {
		t.Fatalf("read %s in %s: %v", name, m.Name, err)
	}
	return b
}

// WriteFile writes a file inside the machine.
func (m *Machine) WriteFile(t *testing.T, name string, data []byte, mode os.FileMode) {
	t.Helper()
	target := filepath.Join(m.Root, name)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, data, mode); err != nil {
		t.Fatalf("write %s in %s: %v", name, m.Name, err)
	}
}

// Eventually polls cond until it holds or timeout passes, then fails the
// test with what.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// InstallSaga copies the binary under test to /usr/bin/saga, where the
// packages put it.
func (m *Machine) InstallSaga(t *testing.T) {
	t.Helper()
	m.CopyIn(t, sagaBinary, "/usr/bin/saga")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
