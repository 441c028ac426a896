package osservice

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Refusals: places where `saga service install` must not write a service.
// Each comes wrapped in a *RefusalError that says what to do instead.
var (
	ErrContainer = errors.New("inside a container without a service manager")
	ErrNotRoot   = errors.New("a system service needs root")
	ErrHomebrew  = errors.New("installed with Homebrew")
	ErrHomeDir   = errors.New("executable under a home directory")
	ErrNoSystemd = errors.New("systemd is not running")
)

// RefusalError is a refused install with the one-line advice for the user.
type RefusalError struct {
	Reason error // one of the Err… refusals above
	Advice string
}

func (e *RefusalError) Error() string { return e.Reason.Error() + ": " + e.Advice }
func (e *RefusalError) Unwrap() error { return e.Reason }

// Host is what the install checks look at. CurrentHost reads the real one;
// tests fill it in.
type Host struct {
	GOOS       string
	Euid       int
	Executable string // absolute, symlinks resolved
	Getenv     func(string) string
	ReadFile   func(name string) ([]byte, error)
	Exists     func(name string) bool
}

// CurrentHost describes the machine this process runs on.
func CurrentHost(getenv func(string) string) (Host, error) {
	exe, err := os.Executable()
	if err != nil {
		return Host{}, fmt.Errorf("find own executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return Host{
		GOOS:       runtime.GOOS,
		Euid:       os.Geteuid(),
		Executable: exe,
		Getenv:     getenv,
		ReadFile:   os.ReadFile,
		Exists: func(name string) bool {
			_, err := os.Stat(name)
			return err == nil
		},
	}, nil
}

// Container names the container this process runs in ("docker", "podman",
// "kubernetes", "systemd-nspawn", …), or "" on a machine of its own.
func (h Host) Container() string {
	if h.GOOS != "linux" {
		return ""
	}
	if v := h.Getenv("container"); v != "" {
		return v
	}
	if b, err := h.ReadFile("/run/systemd/container"); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	switch {
	case h.Exists("/.dockerenv"):
		return "docker"
	case h.Exists("/run/.containerenv"):
		return "podman"
	case h.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return "kubernetes"
	}
	if b, err := h.ReadFile("/proc/1/cgroup"); err == nil {
		for _, name := range []string{"kubepods", "docker", "containerd", "lxc"} {
			if strings.Contains(string(b), name) {
				return name
			}
		}
	}
	return ""
}

// SystemdRunning reports whether systemd is the running service manager.
func (h Host) SystemdRunning() bool {
	return h.GOOS == "linux" && h.Exists("/run/systemd/system")
}

// ServiceManager names the service manager that would run Saga here:
// "systemd", "launchd", "windows", or "" when there is none.
func (h Host) ServiceManager() string {
	switch {
	case h.SystemdRunning():
		return "systemd"
	case h.GOOS == "darwin" && h.Exists("/bin/launchctl"):
		return "launchd"
	case h.GOOS == "windows":
		return "windows"
	}
	return ""
}

// Homebrew reports whether the running binary belongs to a Homebrew install.
func (h Host) Homebrew() bool {
	if prefix := h.Getenv("HOMEBREW_PREFIX"); prefix != "" && strings.HasPrefix(h.Executable, prefix+"/") {
		return true
	}
	return strings.Contains(h.Executable, "/Cellar/") ||
		strings.HasPrefix(h.Executable, "/opt/homebrew/") ||
		strings.HasPrefix(h.Executable, "/home/linuxbrew/.linuxbrew/")
}

// CI reports whether this looks like a continuous-integration job.
func (h Host) CI() bool {
	for _, name := range []string{"CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL", "TF_BUILD"} {
		if v := h.Getenv(name); v != "" && v != "false" && v != "0" {
			return true
		}
	}
	return false
}

// CheckInstall returns a *RefusalError when a service (a per-user one when
// user is set) should not be installed here, and nil when it may.
func (h Host) CheckInstall(user bool) error {
	if c := h.Container(); c != "" && !h.SystemdRunning() {
		return &RefusalError{Reason: ErrContainer, Advice: fmt.Sprintf(
			"this is a %s container, where Saga runs in the foreground: make `saga serve` the container's entrypoint", c)}
	}
	if h.GOOS == "linux" && !h.SystemdRunning() {
		return &RefusalError{Reason: ErrNoSystemd, Advice: "Saga's Linux service is a systemd unit; start Saga with `saga serve` instead"}
	}
	if h.Homebrew() {
		return &RefusalError{Reason: ErrHomebrew, Advice: "let Homebrew manage the service: run `brew services start saga`"}
	}
	if user || h.GOOS == "windows" {
		return nil
	}
	if h.Euid != 0 {
		return &RefusalError{Reason: ErrNotRoot, Advice: "run `sudo saga service install`, or `saga service install --user` for a service of your own"}
	}
	if h.GOOS == "linux" {
		for _, dir := range []string{"/home/", "/root/", "/run/user/"} {
			if strings.HasPrefix(h.Executable, dir) {
				return &RefusalError{Reason: ErrHomeDir, Advice: fmt.Sprintf(
					"the hardened unit hides home directories (ProtectHome=yes) and cannot run %s: install the package, or copy saga to /usr/local/bin and run it from there", h.Executable)}
			}
		}
	}
	return nil
}
