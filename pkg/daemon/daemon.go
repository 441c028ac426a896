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
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
	"github.com/sagaproject/saga/pkg/tlsfiles"
)

// tlsPollInterval is how often the TLS files are checked for a change: a
// stat of three files, cheap enough to notice a rotation within a second.
const tlsPollInterval = time.Second

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
	current  *config.Config   // the configuration last loaded, for Reload's comparison
	tls      *tlsfiles.Server // the TLS files being served; nil without TLS
	// listener is the bound socket, serving TLS as d.tls says.
	listener     *switchListener
	runCtx       context.Context // Run's, for the TLS watcher
	tlsWatchStop context.CancelFunc
	srv          *server.Server // once assembled, for Reload
	audit        *auditSink     // log.audit_file; nil: the main log
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
	ln, err := listen(cfg.Addr(), d.logger)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }() // already closed by the server unless start-up failed
	d.reloadMu.Lock()                 // a SIGHUP may come while Run starts
	d.listener, d.runCtx = &switchListener{Listener: ln}, ctx
	err = d.applyTLS(cfg.Server.TLS)
	d.reloadMu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		d.reloadMu.Lock()
		d.stopTLSWatch()
		d.reloadMu.Unlock()
	}()

	audit, auditSink, err := openAudit(cfg, d.logger)
	if err != nil {
		return err
	}
	d.reloadMu.Lock()
	d.audit = auditSink
	d.reloadMu.Unlock()
	defer func() { // after the last request is answered
		d.reloadMu.Lock()
		_ = d.audit.Close()
		d.reloadMu.Unlock()
	}()

	console, err := newConsole(cfg)
	if err != nil {
		return err
	}
	store, storage, err := d.openStore(ctx)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	srv, err := server.New(ctx, server.Options{
		Store:              store,
		Storage:            storage,
		Clock:              d.clock,
		Logger:             d.logger,
		DefaultTTL:         cfg.Registry.TTL,
		HeartbeatInterval:  cfg.Registry.HeartbeatInterval,
		Version:            d.opts.Version,
		ServiceName:        cfg.Service.Name,
		Auth:               authSettings(cfg),
		Audit:              audit,
		Limits:             apiLimits(cfg.Limits),
		MaxConnections:     cfg.Limits.MaxConnections,
		HeaderTimeout:      cfg.Limits.HeaderTimeout,
		IdleTimeout:        cfg.Limits.IdleTimeout,
		Console:            console,
		CheckPolicy:        registry.CheckPolicy{AllowOtherTargets: cfg.Checks.AllowOtherTargets},
		CheckMaxConcurrent: cfg.Checks.MaxConcurrent,
		Members:            members(store),
	})
	if err != nil {
		_ = store.Close() // the start-up error is the one worth reporting
		return err
	}
	if err := bootstrapFromFile(ctx, d.logger, srv.API().Tokens(), cfg.Auth.BootstrapTokenFile); err != nil {
		_ = srv.Shutdown(context.Background()) // the bootstrap error is the one worth reporting
		return err
	}
	dns, err := listenDNS(cfg, srv, d.logger)
	if err != nil {
		_ = srv.Shutdown(context.Background()) // the DNS error is the one worth reporting
		return err
	}
	d.reloadMu.Lock()
	d.srv = srv
	d.reloadMu.Unlock()
	srv.Start()
	if dns != nil {
		dns.Start()
		d.logger.Info("dns serving", "addr", dns.Addr(), "domain", cfg.DNS.Domain)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(d.listener) }()

	if _, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		d.logger.Warn("telling systemd that saga is ready failed", "err", err)
	}
	configFile := "none"
	if cfg.FileFound {
		configFile = cfg.File
	}
	d.logger.Info("serving", "addr", ln.Addr().String(), "storage", storage, "version", d.opts.Version, "config_file", configFile)
	logAccess(d.logger, cfg)

	select {
	case <-ctx.Done():
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), shutdownDNS(context.Background(), dns), srv.Shutdown(context.Background()))
	}

	d.logger.Info("shutting down", "drain_timeout", cfg.Server.ShutdownTimeout.String())
	if _, err := sd.SdNotify(false, sd.SdNotifyStopping); err != nil {
		d.logger.Warn("telling systemd that saga is stopping failed", "err", err)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	err = errors.Join(shutdownDNS(drainCtx, dns), srv.Shutdown(drainCtx))
	d.logger.Info("stopped serving")
	return err
}

// applyTLS (called with reloadMu held) serves TLS with the files t names, or plain TCP when t names
// none, from the next connection on, and watches the files so that a
// rotated certificate or client CA bundle reaches new connections without
// a signal. Files that do not load leave the listener as it was.
func (d *Daemon) applyTLS(t config.ServerTLSConfig) error {
	var files *tlsfiles.Server
	if t.Enabled() {
		var err error
		if files, err = tlsfiles.NewServer(t.CertFile, t.KeyFile, t.ClientCAFile); err != nil {
			return fmt.Errorf("server.tls: %w", err)
		}
	}
	d.stopTLSWatch()
	d.tls = files
	d.listener.serveTLS(files)
	if files == nil {
		return nil
	}
	ctx, stop := context.WithCancel(d.runCtx)
	d.tlsWatchStop = stop
	go files.Watch(ctx, tlsPollInterval, d.logger.With("component", "tls"))
	d.logger.Info("TLS is on", append([]any{"client_certificates_required", files.MutualTLS()}, files.LogAttrs()...)...)
	return nil
}

func (d *Daemon) stopTLSWatch() {
	if d.tlsWatchStop != nil {
		d.tlsWatchStop()
		d.tlsWatchStop = nil
	}
}
