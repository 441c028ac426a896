package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/osservice"
)

// setupFlags are `saga setup`'s choices.
type setupFlags struct {
	systemd, launchd, noService bool
	nonInteractive              bool
	binDir                      string // "": osservice.Host.BinDir
}

func newSetupCmd(a *app) *cobra.Command {
	var flags setupFlags
	cmd := &cobra.Command{
		Use:   "setup [--systemd|--launchd|--no-service] [--non-interactive] [--bin-dir DIR]",
		Short: "Create the configuration, put saga on the PATH and, on a server, install and start the service",
		Long: "Create the configuration directory and a commented config.toml (an existing\n" +
			"file is kept). Unless this saga is the installed one already (the saga on\n" +
			"PATH, or a package manager's), copy it to /usr/local/bin/saga as root, else\n" +
			"to ~/.local/bin/saga (--bin-dir chooses another directory). Then, where this\n" +
			"looks like a server (not a container, not CI, a service manager present, root\n" +
			"on Linux), install and start the service, running the installed saga.\n" +
			"--systemd or --launchd insist on that service manager; --no-service skips it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.setup(cmd, flags) },
	}
	f := cmd.Flags()
	f.BoolVar(&flags.systemd, "systemd", false, "install a systemd service (Linux)")
	f.BoolVar(&flags.launchd, "launchd", false, "install a launchd job (macOS)")
	f.BoolVar(&flags.noService, "no-service", false, "install no service")
	f.BoolVar(&flags.nonInteractive, "non-interactive", false, "ask nothing; take the defaults")
	f.StringVar(&flags.binDir, "bin-dir", "", "copy this saga into `DIR` when it is not the installed one (default "+osservice.SystemBinDir+" as root, else ~/.local/bin)")
	cmd.MarkFlagsMutuallyExclusive("systemd", "launchd", "no-service")
	return cmd
}

func (a *app) setup(cmd *cobra.Command, flags setupFlags) error {
	host, err := osservice.CurrentHost(a.getenv)
	if err != nil {
		return err
	}
	system := host.GOOS != "windows" && host.Euid == 0
	path, _ := config.FilePath(config.Options{Getenv: a.getenv, System: system})
	if path == "" {
		return errors.New("config: no configuration directory (set HOME or SAGA_CONFIG_DIR)")
	}
	switch err := config.WriteDefaultFile(path, false); {
	case err == nil:
		a.say("Created %s (every setting commented out at its default).", path)
	case fileExists(path):
		a.say("Kept the existing %s.", path)
	default:
		return err
	}
	executable, copied, err := a.placeBinary(host, flags.binDir)
	if err != nil {
		return err
	}

	if flags.noService {
		a.say("Not installing a service (--no-service). Start Saga in the foreground with `saga serve`.")
		return nil
	}
	want := ""
	switch {
	case flags.systemd:
		want = "systemd"
	case flags.launchd:
		want = "launchd"
	}
	manager := host.ServiceManager()
	if want != "" && manager != want {
		return fmt.Errorf("--%s: %s is not the running service manager here", want, want)
	}
	if want == "" {
		if reason := notAServer(host); reason != "" {
			a.say("Not installing a service: %s.\nStart Saga in the foreground with `saga serve`, or run `saga service install` where a service belongs.", reason)
			return nil
		}
	}
	// On macOS an ordinary user gets a LaunchAgent of their own; elsewhere
	// the service is the system's.
	user := host.GOOS == "darwin" && host.Euid != 0
	if !flags.nonInteractive && a.interactive() && !a.confirm(fmt.Sprintf("Install and start Saga as a %s service? [Y/n] ", manager)) {
		a.say("Not installing a service. `saga service install` does it later.")
		return nil
	}

	m, err := a.serviceManagerFor(cmd, user, nil, executable)
	if err != nil {
		return err
	}
	state, err := m.Status(cmd.Context())
	if err != nil {
		return err
	}
	switch {
	case state == osservice.StateNotInstalled:
		done, err := m.Install(cmd.Context())
		if err != nil {
			return err
		}
		if err := a.reportInstalled(cmd, m, done, user); err != nil {
			return err
		}
	case state == osservice.StateStopped:
		if err := m.Start(cmd.Context()); err != nil {
			return err
		}
		a.say("The service was installed already; started it.")
	case copied:
		a.say("The service is installed and running already; `saga restart` makes it run the saga just installed.")
	default:
		a.say("The service is installed and running already.")
	}
	a.say("Next: `saga health` checks the server; edit %s and run `saga restart` to reconfigure.", path)
	return nil
}

// placeBinary puts this saga on the PATH unless it is the installed one
// already (osservice.Host.PlaceBinary), says in one line what it did, and
// returns the saga a service should run and whether it was copied just now.
// dir is --bin-dir; "" picks the directory for this user.
func (a *app) placeBinary(host osservice.Host, dir string) (executable string, copied bool, err error) {
	if dir == "" {
		dir = host.BinDir(a.home())
	}
	if host.GOOS == "windows" || dir == "" {
		return host.Executable, false, nil
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", false, fmt.Errorf("--bin-dir: %w", err)
	}
	done, err := host.PlaceBinary(dir)
	if err != nil {
		return "", false, err
	}
	switch done.Outcome {
	case osservice.BinaryCopied:
		switch done.OnPath {
		case done.Path:
			a.say("Installed this saga as %s.", done.Path)
		case "":
			a.say("Installed this saga as %s; add %s to PATH to run it as `saga`.", done.Path, dir)
		default:
			a.say("Installed this saga as %s, but PATH finds %s first.", done.Path, done.OnPath)
		}
	case osservice.BinaryInstalled:
		a.say("This saga is the installed one (%s); nothing to copy.", done.Installed)
	case osservice.BinaryPackaged:
		if done.Installed == host.Executable {
			a.say("This saga came with a package manager (%s), which keeps it up to date; nothing to copy.", done.Installed)
		} else {
			a.say("Not copying this saga: PATH finds %s, which a package manager installed and keeps up to date.", done.Installed)
		}
	}
	return done.Path, done.Outcome == osservice.BinaryCopied, nil
}

// notAServer says why this machine should not get a service without being
// asked, or "" when it should.
func notAServer(h osservice.Host) string {
	switch {
	case h.Container() != "" && !h.SystemdRunning():
		return "this is a " + h.Container() + " container"
	case h.CI():
		return "this is a CI job"
	case h.ServiceManager() == "":
		return "no service manager (systemd, launchd) is running"
	case h.GOOS == "linux" && h.Euid != 0:
		return "a system service needs root: run `sudo saga setup`, or `saga service install --user` for a service of your own"
	}
	return ""
}

func (a *app) say(format string, args ...any) {
	fmt.Fprintf(a.stdout, format+"\n", args...)
}

// interactive reports whether a person can answer on stdin.
func (a *app) interactive() bool {
	f, ok := a.stdin.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// confirm asks a yes/no question; the default is yes.
func (a *app) confirm(question string) bool {
	fmt.Fprint(a.stdout, question)
	answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "" || answer == "y" || answer == "yes"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
