// Package daemon wires Saga's server together and runs it: it opens the
// store, loads the in-memory view, starts the reaper and the HTTP API,
// tells systemd when it is ready, and shuts everything down in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

const (
	// refreshInterval is how often the view is reloaded from a snapshot,
	// the fallback should the change feed ever miss an event unnoticed.
	refreshInterval = 30 * time.Second
	// readHeaderTimeout bounds how long a client may take to send its
	// request headers.
	readHeaderTimeout = 10 * time.Second
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

// Run serves until ctx ends, then shuts down in order: report not ready,
// stop accepting, drain requests in flight for at most
// server.shutdown_timeout, stop the background work, close the store. It
// returns nil after a clean shutdown and the first error that stopped it
// otherwise.
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
	defer func() {
		if cerr := store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	// Self-preservation: instances could not heartbeat while Saga was
	// down. A store that is unreachable now (Redis) serves degraded, and
	// grants the grace itself and asks for a resync when it comes back.
	v := view.New(d.clock)
	if err := store.GrantGrace(ctx, d.clock.Now()); err != nil {
		if !errors.Is(err, registry.ErrUnavailable) {
			return fmt.Errorf("grant start-up grace: %w", err)
		}
		d.logger.Warn("store unreachable at start-up; serving degraded until it answers", "err", err)
	} else {
		snap, err := store.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("load registry: %w", err)
		}
		v.Load(snap)
	}

	api := httpapi.New(httpapi.Options{
		Store:             store,
		View:              v,
		Clock:             d.clock,
		Logger:            d.logger,
		DefaultTTL:        cfg.Registry.TTL,
		HeartbeatInterval: cfg.Registry.HeartbeatInterval,
		Version:           d.opts.Version,
		Storage:           storage,
	})

	// The background work outlives ctx: it keeps the view current while
	// requests drain, and stops only after them.
	work, stopWork := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.pump(work, store, v) })
	wg.Go(func() { view.Guard(work, store, v, d.clock, view.GuardInterval, d.logger.With("component", "guard")) })
	reaper := registry.NewReaper(api.Store(), d.clock, v.Apply, d.logger)
	wg.Go(func() { reaper.Run(work) })
	defer func() {
		stopWork()
		wg.Wait()
	}()

	longLived := newDrainer()
	srv := &http.Server{
		Handler:           longLived.wrap(api),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(d.logger.With("component", "http").Handler(), slog.LevelWarn),
	}
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
		return fmt.Errorf("serve: %w", err)
	}

	d.logger.Info("shutting down", "drain_timeout", cfg.Server.ShutdownTimeout.String())
	api.SetReady(false)
	if _, err := sd.SdNotify(false, sd.SdNotifyStopping); err != nil {
		d.logger.Warn("telling systemd that saga is stopping failed", "err", err)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	longLived.close() // blocking queries and event streams would never drain by themselves
	if err := srv.Shutdown(drainCtx); err != nil {
		d.logger.Warn("requests still in flight after the drain timeout; closing their connections", "err", err)
		_ = srv.Close() // the drain error above is the one worth reporting
	}
	d.logger.Info("stopped serving")
	return nil
}

// pump feeds the store's change feed into the view until ctx ends.
func (d *Daemon) pump(ctx context.Context, store registry.Store, v *view.View) {
	view.Follow(ctx, store, v, refreshInterval, d.logger.With("component", "pump"))
}
