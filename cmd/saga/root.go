package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// app is what every command needs from the process: its environment and
// its standard streams. Commands never read os.* directly, so tests can run
// them in-process.
type app struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// exitError carries a specific exit status (e.g. `saga status`, `saga health`).
type exitError struct {
	code int
	err  error // nil when the command already printed what it had to say
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// run executes the command line and returns the process exit status.
// Errors are printed to stderr as one line.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.err != nil {
			fmt.Fprintln(stderr, "saga: "+oneLine(exit.err.Error()))
		}
		return exit.code
	}
	fmt.Fprintln(stderr, "saga: "+oneLine(err.Error()))
	return 1
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "saga",
		Short: "Saga is a service-discovery registry",
		Long: "Saga is a service-discovery registry: services register instances over HTTP\n" +
			"with a TTL, keep them alive with heartbeats, and clients look them up.\n" +
			"Run without a command, saga serves in the foreground (as `saga serve`).",
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true

	serve := newServeCmd(a)
	// `saga` alone serves, with serve's flags.
	root.Flags().AddFlagSet(serve.Flags())
	root.RunE = serve.RunE

	root.AddCommand(serve, newVersionCmd(a), newConfigCmd(a), newCompletionCmd(a), newGenManCmd(a))
	root.AddCommand(newClientCmds(a)...)
	root.AddCommand(newServiceCmds(a)...)
	for _, sub := range root.Commands() {
		explainArgErrors(sub)
	}
	return root
}

// explainArgErrors makes a wrong number of arguments name the command and
// show its usage, instead of cobra's bare "accepts 1 arg(s), received 0".
func explainArgErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return fmt.Errorf("%s: %w (usage: %s)", c.Name(), err, c.UseLine())
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		explainArgErrors(sub)
	}
}

// oneLine folds an error onto a single line for the terminal.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
