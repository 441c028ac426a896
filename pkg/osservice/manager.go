package osservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kardianos/service"
)

// Errors that the commands report as they are.
var (
	ErrNotInstalled     = errors.New("not installed")
	ErrAlreadyInstalled = errors.New("already installed")
)

// SystemUser is the account the system service runs as (User= in the unit).
const SystemUser = "saga"

// State is what Status reports.
type State int

// The states a service can be in.
const (
	StateNotInstalled State = iota
	StateStopped
	StateRunning
)

func (s State) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateStopped:
		return "stopped"
	default:
		return "not installed"
	}
}

// Options say which service to manage and what it runs.
type Options struct {
	Name    string // unit, launchd label or Windows service name
	User    bool   // a per-user service instead of a system one
	Command Command
	// Env is handed to the launchd job and the Windows service; the systemd
	// unit reads /etc/default/saga instead.
	Env []EnvVar
	// Home is the user's home directory (launchd agents log under ~/.saga/logs).
	Home string
}

// RunFunc runs a program and returns its combined output; tests replace it.
type RunFunc func(ctx context.Context, name string, args ...string) (string, error)

// Exec runs a real program.
func Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Manager installs and controls one service.
type Manager struct {
	opts   Options
	host   Host
	svc    service.Service
	run    RunFunc
	logger *slog.Logger
}

// noProgram satisfies kardianos' Interface: the Manager only installs and
// controls the service; `saga serve` is what the service manager runs.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

// New returns a Manager for opts on host. run executes systemctl and
// useradd (Exec in production).
func New(opts Options, host Host, run RunFunc, logger *slog.Logger) (*Manager, error) {
	if opts.Name == "" {
		return nil, errors.New("service name: must not be empty")
	}
	cfg := &service.Config{
		Name:        opts.Name,
		DisplayName: "Saga",
		Description: "Saga service registry",
		Executable:  opts.Command.Executable,
		Arguments:   opts.Command.Args,
		Option:      service.KeyValue{"UserService": opts.User},
	}
	switch host.GOOS {
	case "linux":
		unit, err := unitFor(opts)
		if err != nil {
			return nil, err
		}
		cfg.Option["SystemdScript"] = unit
	case "darwin":
		plist, err := LaunchdPlist(plistFor(opts))
		if err != nil {
			return nil, err
		}
		cfg.Option["LaunchdConfig"] = plist
	case "windows":
		cfg.EnvVars = make(map[string]string, len(opts.Env))
		for _, v := range opts.Env {
			cfg.EnvVars[v.Name] = v.Value
		}
		cfg.Option["OnFailure"] = "restart"
		cfg.Option["OnFailureDelayDuration"] = "2s"
	}
	svc, err := service.New(noProgram{}, cfg)
	// On Linux only systemd runs Saga's service; without it svc stays nil
	// and the Manager reports "not installed" and refuses to install.
	if err != nil && (host.GOOS != "linux" || host.SystemdRunning()) {
		return nil, fmt.Errorf("service manager: %w", err)
	}
	return &Manager{opts: opts, host: host, svc: svc, run: run, logger: logger.With("component", "osservice")}, nil
}

func unitFor(opts Options) (string, error) {
	if opts.User {
		return SystemdUserUnit(opts.Command)
	}
	return SystemdUnit(opts.Command)
}

// launchdDataDir is the macOS daemon's state directory: launchd gives a
// daemon no home, so Saga is told where its embedded store lives.
const launchdDataDir = "/usr/local/var/lib/saga"

func plistFor(opts Options) Plist {
	if opts.User {
		return Plist{Label: opts.Name, Command: opts.Command, Environment: opts.Env,
			WorkingDirectory: opts.Home, LogDir: filepath.Join(opts.Home, ".saga", "logs")}
	}
	env := slices.Clone(opts.Env)
	if !slices.ContainsFunc(env, func(v EnvVar) bool { return v.Name == "SAGA_DATA_DIR" || v.Name == "SAGA_STORAGE_PATH" }) {
		env = append(env, EnvVar{Name: "SAGA_DATA_DIR", Value: launchdDataDir})
	}
	return Plist{Label: opts.Name, Command: opts.Command, Environment: env,
		WorkingDirectory: "/", LogDir: "/var/log/saga"}
}

// UnitFile is the file that describes the service to the service manager:
// the systemd unit, the launchd property list, or "" on Windows.
func (m *Manager) UnitFile() string {
	switch {
	case m.systemd() && m.opts.User:
		return filepath.Join(m.opts.Home, ".config", "systemd", "user", m.unitName())
	case m.systemd():
		if p := m.packagedUnit(); p != "" {
			return p
		}
		return "/etc/systemd/system/" + m.unitName()
	case m.host.GOOS == "darwin" && m.opts.User:
		return filepath.Join(m.opts.Home, "Library", "LaunchAgents", m.opts.Name+".plist")
	case m.host.GOOS == "darwin":
		return "/Library/LaunchDaemons/" + m.opts.Name + ".plist"
	}
	return ""
}

// LogHint tells the user where the service's logs are.
func (m *Manager) LogHint() string {
	switch {
	case m.systemd() && m.opts.User:
		return "journalctl --user -u " + m.opts.Name
	case m.systemd():
		return "journalctl -u " + m.opts.Name
	case m.host.GOOS == "darwin":
		return plistFor(m.opts).LogDir
	}
	return "the Windows event log"
}

func (m *Manager) systemd() bool { return m.host.GOOS == "linux" && m.host.SystemdRunning() }

func (m *Manager) unitName() string { return m.opts.Name + ".service" }

// packagedUnit is the unit a .deb or .rpm put in place, or "".
func (m *Manager) packagedUnit() string {
	if m.opts.User {
		return ""
	}
	for _, dir := range []string{"/usr/lib/systemd/system/", "/lib/systemd/system/"} {
		if m.host.Exists(dir + m.unitName()) {
			return dir + m.unitName()
		}
	}
	return ""
}

func (m *Manager) systemctl(ctx context.Context, args ...string) (string, error) {
	if m.opts.User {
		args = append([]string{"--user"}, args...)
	}
	m.logger.Debug("running", "command", "systemctl "+strings.Join(args, " "))
	return m.run(ctx, "systemctl", args...)
}

// Status reports whether the service is installed and running. On Linux
// without systemd no Saga service can be installed.
func (m *Manager) Status(ctx context.Context) (State, error) {
	if m.host.GOOS == "linux" && !m.systemd() {
		return StateNotInstalled, nil
	}
	if m.systemd() {
		out, err := m.systemctl(ctx, "show", "--property=LoadState,ActiveState", m.unitName())
		if err != nil {
			return StateNotInstalled, fmt.Errorf("query %s: %w", m.unitName(), err)
		}
		props := map[string]string{}
		for line := range strings.Lines(out) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			props[k] = v
		}
		return systemdState(props["LoadState"], props["ActiveState"]), nil
	}
	st, err := m.svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return StateNotInstalled, nil
	case err != nil:
		return StateNotInstalled, fmt.Errorf("query %s: %w", m.opts.Name, err)
	case st == service.StatusRunning:
		return StateRunning, nil
	}
	return StateStopped, nil
}

// systemdState maps a unit's LoadState and ActiveState to a State.
func systemdState(load, active string) State {
	switch {
	case load == "not-found" || load == "":
		return StateNotInstalled
	case active == "active" || active == "activating" || active == "reloading":
		return StateRunning
	}
	return StateStopped
}

// Installed says what Install did.
type Installed struct {
	UnitFile string
	Packaged bool // the package's unit was enabled; nothing was written
}

// Install writes the service (or enables the packaged unit), creates the
// system user where needed, and starts it. It refuses where a service makes
// no sense (see Host.CheckInstall).
func (m *Manager) Install(ctx context.Context) (Installed, error) {
	if err := m.host.CheckInstall(m.opts.User); err != nil {
		return Installed{}, err
	}
	if m.systemd() && !m.opts.User {
		if err := m.ensureSystemUser(ctx); err != nil {
			return Installed{}, err
		}
		if unit := m.packagedUnit(); unit != "" {
			if _, err := m.systemctl(ctx, "enable", "--now", m.unitName()); err != nil {
				return Installed{}, fmt.Errorf("enable packaged unit %s: %w", unit, err)
			}
			return Installed{UnitFile: unit, Packaged: true}, nil
		}
	}
	state, err := m.Status(ctx)
	if err != nil {
		return Installed{}, err
	}
	if state != StateNotInstalled {
		return Installed{}, fmt.Errorf("service %s: %w; `saga service reinstall` rewrites it", m.opts.Name, ErrAlreadyInstalled)
	}
	if m.host.GOOS == "darwin" {
		if err := os.MkdirAll(plistFor(m.opts).LogDir, 0o755); err != nil {
			return Installed{}, fmt.Errorf("create log directory: %w", err)
		}
		if !m.opts.User {
			if err := os.MkdirAll(launchdDataDir, 0o700); err != nil {
				return Installed{}, fmt.Errorf("create data directory: %w", err)
			}
		}
	}
	if err := m.svc.Install(); err != nil {
		return Installed{}, fmt.Errorf("install service %s: %w", m.opts.Name, err)
	}
	if err := m.svc.Start(); err != nil {
		return Installed{}, fmt.Errorf("start service %s (installed, see %s): %w", m.opts.Name, m.LogHint(), err)
	}
	return Installed{UnitFile: m.UnitFile()}, nil
}

// Uninstall stops the service and removes it. A packaged unit is only
// disabled: its file belongs to the package.
func (m *Manager) Uninstall(ctx context.Context) error {
	state, err := m.Status(ctx)
	if err != nil {
		return err
	}
	if state == StateNotInstalled {
		return fmt.Errorf("service %s: %w", m.opts.Name, ErrNotInstalled)
	}
	if m.systemd() && m.packagedUnit() != "" && !m.host.Exists("/etc/systemd/system/"+m.unitName()) {
		if _, err := m.systemctl(ctx, "disable", "--now", m.unitName()); err != nil {
			return fmt.Errorf("disable packaged unit: %w", err)
		}
		return nil
	}
	if state == StateRunning {
		if err := m.svc.Stop(); err != nil {
			return fmt.Errorf("stop service %s: %w", m.opts.Name, err)
		}
	}
	if err := m.svc.Uninstall(); err != nil {
		return fmt.Errorf("uninstall service %s: %w", m.opts.Name, err)
	}
	return nil
}

// Reinstall rewrites the service from this binary's unit: it stops a running
// service, uninstalls and installs it, and leaves it running only if it was.
func (m *Manager) Reinstall(ctx context.Context) (Installed, error) {
	before, err := m.Status(ctx)
	if err != nil {
		return Installed{}, err
	}
	if before != StateNotInstalled {
		if err := m.Uninstall(ctx); err != nil {
			return Installed{}, err
		}
	}
	done, err := m.Install(ctx)
	if err != nil {
		return done, err
	}
	if before == StateStopped {
		return done, m.Stop(ctx)
	}
	return done, nil
}

// Start starts the installed service.
func (m *Manager) Start(ctx context.Context) error {
	return m.control(ctx, "start", m.svc.Start)
}

// Stop stops the installed service.
func (m *Manager) Stop(ctx context.Context) error {
	return m.control(ctx, "stop", m.svc.Stop)
}

// Restart restarts the installed service (or starts it when stopped).
func (m *Manager) Restart(ctx context.Context) error {
	if m.systemd() {
		return m.control(ctx, "restart", func() error {
			_, err := m.systemctl(ctx, "restart", m.unitName())
			return err
		})
	}
	return m.control(ctx, "restart", m.svc.Restart)
}

func (m *Manager) control(ctx context.Context, verb string, do func() error) error {
	state, err := m.Status(ctx)
	if err != nil {
		return err
	}
	if state == StateNotInstalled {
		return fmt.Errorf("service %s: %w; run `saga service install` first", m.opts.Name, ErrNotInstalled)
	}
	if err := do(); err != nil {
		return fmt.Errorf("%s service %s (see %s): %w", verb, m.opts.Name, m.LogHint(), err)
	}
	return nil
}

// ensureSystemUser creates the unprivileged account the unit runs as.
func (m *Manager) ensureSystemUser(ctx context.Context) error {
	_, err := user.Lookup(SystemUser)
	if err == nil {
		return nil
	}
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		return fmt.Errorf("look up user %s: %w", SystemUser, err)
	}
	_, err = m.run(ctx, "useradd", "--system", "--user-group", "--home-dir", "/var/lib/saga",
		"--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "Saga service registry", SystemUser)
	if err != nil {
		return fmt.Errorf("create system user %s: %w", SystemUser, err)
	}
	return nil
}
