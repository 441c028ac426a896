package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/osservice"
)

// Exit statuses of `saga status`, as LSB init scripts and systemctl use them.
const (
	exitRunning      = 0
	exitStopped      = 3
	exitNotInstalled = 4
)

// serviceFlags are what every `saga service …` command reads.
type serviceFlags struct {
	user bool
}

func (f *serviceFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.user, "user", false, "the per-user service instead of the system one")
}

// newServiceCmds returns `saga service …`, `saga setup` and the shortcuts
// `saga start|stop|restart|status`.
func newServiceCmds(a *app) []*cobra.Command {
	service := &cobra.Command{
		Use:   "service",
		Short: "Install and control Saga as an OS service (systemd, launchd, Windows)",
		Long: "Install and control Saga as an OS service: a hardened systemd unit on Linux,\n" +
			"a launchd job on macOS, a Windows service. --user manages a per-user service.",
		Args: cobra.NoArgs,
	}
	service.AddCommand(
		newServiceInstallCmd(a, "install", "Install the service and start it"),
		newServiceInstallCmd(a, "reinstall", "Rewrite the service from this binary, keeping it running if it was"),
		newServiceUninstallCmd(a),
	)
	for _, newCmd := range []func(*app) *cobra.Command{newServiceStartCmd, newServiceStopCmd, newServiceRestartCmd, newServiceStatusCmd} {
		service.AddCommand(newCmd(a))
	}
	shortcuts := []*cobra.Command{newServiceStartCmd(a), newServiceStopCmd(a), newServiceRestartCmd(a), newServiceStatusCmd(a)}
	for _, s := range shortcuts {
		s.Short += " (same as `saga service " + s.Name() + "`)"
	}
	return append([]*cobra.Command{service, newSetupCmd(a)}, shortcuts...)
}

// serviceManager builds the Manager for the service that cmd's flags and
// the configuration name. serveArgs follow "serve" on the service's
// command line.
func (a *app) serviceManager(cmd *cobra.Command, user bool, serveArgs []string) (*osservice.Manager, error) {
	return a.serviceManagerFor(cmd, user, serveArgs, "")
}

// serviceManagerFor is serviceManager for a service that runs executable
// (an absolute path, symlinks resolved), or the running binary when it is "".
func (a *app) serviceManagerFor(cmd *cobra.Command, user bool, serveArgs []string, executable string) (*osservice.Manager, error) {
	cfg, err := config.Load(config.Options{Getenv: a.getenv, Flags: configFlags(cmd), System: !user && config.IsSystem()})
	if err != nil {
		return nil, err
	}
	host, err := osservice.CurrentHost(a.getenv)
	if err != nil {
		return nil, err
	}
	if executable != "" {
		host.Executable = executable
	}
	opts := osservice.Options{
		Name:    cfg.Service.Name,
		User:    user,
		Command: osservice.Command{Executable: host.Executable, Args: append([]string{"serve"}, serveArgs...)},
		Home:    a.home(),
	}
	if user && opts.Home == "" {
		return nil, errors.New("--user: no home directory (HOME is not set)")
	}
	opts.Env = a.sagaEnvironment()
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return osservice.New(opts, host, osservice.Exec, logger)
}

// sagaEnvironment is the Saga configuration set in this environment, which a
// launchd job or Windows service is given; a systemd unit reads
// /etc/default/saga instead.
func (a *app) sagaEnvironment() []osservice.EnvVar {
	var env []osservice.EnvVar
	for _, key := range config.Keys() {
		for _, name := range config.EnvNames(key) {
			if v := a.getenv(name); v != "" {
				env = append(env, osservice.EnvVar{Name: name, Value: v})
			}
		}
	}
	if dir := a.getenv("SAGA_CONFIG_DIR"); dir != "" {
		env = append(env, osservice.EnvVar{Name: "SAGA_CONFIG_DIR", Value: dir})
	}
	return env
}

func (a *app) home() string {
	if home := a.getenv("HOME"); home != "" {
		return home
	}
	return a.getenv("USERPROFILE")
}

// configFlags returns cmd's flag set when it carries the configuration
// flags (install does), else nil.
func configFlags(cmd *cobra.Command) *pflag.FlagSet {
	if cmd.Flags().Lookup(config.FlagConfig) == nil {
		return nil
	}
	return cmd.Flags()
}

// carriedArgs turns the configuration flags given to install into the
// service's own command line, so the service starts the way it was asked to.
func carriedArgs(fs *pflag.FlagSet) ([]string, error) {
	var args []string
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed || f.Name == "user" || err != nil {
			return
		}
		value := f.Value.String()
		if f.Name == config.FlagConfig {
			// The service does not start in this directory.
			if value, err = filepath.Abs(value); err != nil {
				err = fmt.Errorf("--config: %w", err)
				return
			}
		}
		args = append(args, "--"+f.Name, value)
	})
	return args, err
}

func newServiceInstallCmd(a *app, verb, short string) *cobra.Command {
	var flags serviceFlags
	cmd := &cobra.Command{
		Use:   verb + " [--user] [--config FILE] [--port N] [--host ADDR] ...",
		Short: short,
		Long: short + ".\n\nThe configuration flags given here (--config, --port, --host, --data-dir,\n" +
			"--redis-url, --log-level) are written into the service's command line.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			args, err := carriedArgs(cmd.Flags())
			if err != nil {
				return err
			}
			m, err := a.serviceManager(cmd, flags.user, args)
			if err != nil {
				return err
			}
			var done osservice.Installed
			if verb == "reinstall" {
				done, err = m.Reinstall(cmd.Context())
			} else {
				done, err = m.Install(cmd.Context())
			}
			if err != nil {
				return err
			}
			return a.reportInstalled(cmd, m, done, flags.user)
		},
	}
	flags.add(cmd)
	config.BindFlags(cmd.Flags())
	return cmd
}

func (a *app) reportInstalled(cmd *cobra.Command, m *osservice.Manager, done osservice.Installed, user bool) error {
	state, err := m.Status(cmd.Context())
	if err != nil {
		return err
	}
	what := "wrote " + done.UnitFile
	if done.Packaged {
		what = "enabled the packaged unit " + done.UnitFile
	}
	if done.UnitFile == "" {
		what = "registered it with the service manager"
	}
	status := "saga status"
	if user {
		status += " --user"
	}
	_, err = fmt.Fprintf(a.stdout, "Installed the service: %s; it is %s.\nCheck it with `%s`; logs: %s.\n", what, state, status, m.LogHint())
	return err
}

func newServiceUninstallCmd(a *app) *cobra.Command {
	var flags serviceFlags
	cmd := &cobra.Command{
		Use:   "uninstall [--user]",
		Short: "Stop the service and remove it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.serviceManager(cmd, flags.user, nil)
			if err != nil {
				return err
			}
			if err := m.Uninstall(cmd.Context()); err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, "Stopped and removed the service.")
			return err
		},
	}
	flags.add(cmd)
	return cmd
}

// newServiceControlCmd builds start, stop and restart.
func newServiceControlCmd(a *app, verb, short, done string, do func(*osservice.Manager, *cobra.Command) error) *cobra.Command {
	var flags serviceFlags
	cmd := &cobra.Command{
		Use:   verb + " [--user]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.serviceManager(cmd, flags.user, nil)
			if err != nil {
				return err
			}
			if err := do(m, cmd); err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, done)
			return err
		},
	}
	flags.add(cmd)
	return cmd
}

func newServiceStartCmd(a *app) *cobra.Command {
	return newServiceControlCmd(a, "start", "Start the installed service", "Started the service.",
		func(m *osservice.Manager, cmd *cobra.Command) error { return m.Start(cmd.Context()) })
}

func newServiceStopCmd(a *app) *cobra.Command {
	return newServiceControlCmd(a, "stop", "Stop the service", "Stopped the service.",
		func(m *osservice.Manager, cmd *cobra.Command) error { return m.Stop(cmd.Context()) })
}

func newServiceRestartCmd(a *app) *cobra.Command {
	return newServiceControlCmd(a, "restart", "Restart the service", "Restarted the service.",
		func(m *osservice.Manager, cmd *cobra.Command) error { return m.Restart(cmd.Context()) })
}

func newServiceStatusCmd(a *app) *cobra.Command {
	var flags serviceFlags
	cmd := &cobra.Command{
		Use:   "status [--user]",
		Short: "Print whether the service is running, stopped or not installed",
		Long: "Print whether the service is running, stopped or not installed.\n" +
			"Exit status: 0 running, 3 stopped, 4 not installed (as systemctl and LSB scripts).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.serviceManager(cmd, flags.user, nil)
			if err != nil {
				return err
			}
			state, err := m.Status(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(a.stdout, state); err != nil {
				return err
			}
			return statusExit(state)
		},
	}
	flags.add(cmd)
	return cmd
}

// statusExit is the exit status that matches state (nil for running).
func statusExit(state osservice.State) error {
	code := map[osservice.State]int{
		osservice.StateRunning:      exitRunning,
		osservice.StateStopped:      exitStopped,
		osservice.StateNotInstalled: exitNotInstalled,
	}[state]
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}
