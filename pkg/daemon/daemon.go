// Package daemon runs Saga's server from its configuration: it binds the
// port, opens the store, assembles the server (package server), tells
// systemd when it is ready and when it stops, reloads on SIGHUP, and shuts
// down in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
)

// Options is what the daemon needs besides its configuration.
type Options struct {
	Config *config.Config
	// Reload reads the configuration again, on SIGHUP; nil: Reload does nothing.
	Reload func() (*config.Config, error)
	// Getenv locates the default data directory (config.Config.DataDir).
	Getenv func(string) string
	Logger *slog.Logger
	// Level is the logger's level, which Reload adjusts; nil: left alone.
	Level   *slog.LevelVar
	Version string
	Clock   registry.Clock // nil: the system clock
}

// Daemon is one Saga server.
type Daemon struct {
	opts   Options
	cfg    *config.Config // the configuration Run started with
	clock  registry.Clock
	logger *slog.Logger

	reloadMu sync.Mutex
	current  *config.Config // the configuration last loaded, for Reload's comparison
}

// New returns a daemon that Run starts.
func New(opts Options) *Daemon {
	if opts.Clock == nil {
		opts.Clock = registry.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	return &Daemon{opts: opts, cfg: opts.Config, current: opts.Config, clock: opts.Clock, logger: opts.Logger}
}

// Run serves until ctx ends, then shuts down in the order of
// server.Shutdown, draining requests for at most server.shutdown_timeout.
// It returns nil after a clean shutdown and the first error that stopped
// it otherwise.
func (d *Daemon) Run(ctx context.Context) (err error) {
	cfg := d.cfg
	// Bind first: a busy port is the most common start-up failure, and
	// should not wait behind opening the store.
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr.Err
		}
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	defer func() { _ = ln.Close() }() // already closed by the server unless start-up failed

	store, storage, err := d.openStore(ctx)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	srv, err := server.New(ctx, server.Options{
		Store:             store,
		Storage:           storage,
		Clock:             d.clock,
		Logger:            d.logger,
		DefaultTTL:        cfg.Registry.TTL,
		HeartbeatInterval: cfg.Registry.HeartbeatInterval,
		Version:           d.opts.Version,
		ServiceName:       cfg.Service.Name,
	})
	if err != nil {
		_ = store.Close() // the start-up error is the one worth reporting
		return err
	}
	srv.Start()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if _, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		d.logger.Warn("telling systemd that saga is ready failed", "err", err)
	}
	configFile := "none"
	if cfg.FileFound {
		configFile = cfg.File
	}
	d.logger.Info("serving", "addr", ln.Addr().String(), "storage", storage, "version", d.opts.Version, "config_file", configFile)

	select {
	case <-ctx.Done():
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), srv.Shutdown(context.Background()))
	}

	d.logger.Info("shutting down", "drain_timeout", cfg.Server.ShutdownTimeout.String())
	if _, err := sd.SdNotify(false, sd.SdNotifyStopping); err != nil {
		d.logger.Warn("telling systemd that saga is stopping failed", "err", err)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(drainCtx)
	d.logger.Info("stopped serving")
	return err
}
