package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/daemon"
	"github.com/sagaproject/saga/pkg/osservice"
)

func newServeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry server in the foreground",
		Long: "Run the registry server in the foreground. SIGINT or SIGTERM drains the\n" +
			"requests in flight and exits 0 (a second signal exits at once); SIGHUP\n" +
			"re-reads the configuration and applies a new log level.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), cmd.Flags())
		},
	}
	config.BindFlags(cmd.Flags())
	return cmd
}

// configOptions is where this process finds its configuration.
func (a *app) configOptions(flags *pflag.FlagSet) config.Options {
	return config.Options{Getenv: a.getenv, Flags: flags, System: config.IsSystem()}
}

func (a *app) serve(ctx context.Context, flags *pflag.FlagSet) error {
	opts := a.configOptions(flags)
	cfg, err := config.Load(opts)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Log.Level)
	logger := daemon.NewLogger(a.stderr, cfg.Log.Format, level)
	d := daemon.New(daemon.Options{
		Config:  cfg,
		Reload:  func() (*config.Config, error) { return config.Load(opts) },
		Getenv:  a.getenv,
		Logger:  logger,
		Level:   level,
		Version: Version(),
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	done := make(chan struct{})
	defer close(done)
	go func() {
		draining := false
		for {
			select {
			case <-done:
				return
			case sig := <-signals:
				switch {
				case sig == syscall.SIGHUP:
					logger.Info("reloading the configuration", "signal", sig.String())
					d.Reload()
				case !draining:
					draining = true
					logger.Info("signal received; draining", "signal", sig.String())
					cancel()
				default:
					// The operator does not want to wait for the drain.
					fmt.Fprintln(a.stderr, "saga: second signal; exiting at once")
					os.Exit(130)
				}
			}
		}
	}()
	// Under the Windows service manager, serving goes through its handshake.
	return osservice.RunManaged(ctx, cfg.Service.Name, d.Run)
}
