// Package clienttest starts a real Saga API for tests of code that talks
// to it (the client, the command line, the load tool): the HTTP API over
// the embedded store in a temp dir, the in-memory view fed by the store's
// change feed, and the reaper, on a free loopback port.
package clienttest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/embedded"
	"github.com/sagaproject/saga/pkg/view"
)

// Server is a running Saga API.
type Server struct {
	URL   string // base URL, e.g. http://127.0.0.1:41234
	Store registry.Store
	View  *view.View
}

// Options tune the server; zero values take the API's defaults.
type Options struct {
	DefaultTTL        time.Duration
	HeartbeatInterval time.Duration
	KeepAlive         time.Duration // comment lines on idle event streams
}

// Start runs a server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	store, err := embedded.Open(t.TempDir(), logger)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	clock := registry.SystemClock{}
	v := view.New(clock)
	snap, err := store.Snapshot(ctx)
	if err != nil {
		t.Fatalf("load store: %v", err)
	}
	v.Load(snap)
	api := httpapi.New(httpapi.Options{
		Store:             store,
		View:              v,
		Clock:             clock,
		Logger:            logger,
		DefaultTTL:        opts.DefaultTTL,
		HeartbeatInterval: opts.HeartbeatInterval,
		KeepAlive:         opts.KeepAlive,
		Version:           "test",
		Storage:           "embedded",
	})
	var wg sync.WaitGroup
	wg.Go(func() { view.Follow(ctx, store, v, 30*time.Second, logger) })
	wg.Go(func() { view.Guard(ctx, store, v, clock, view.GuardInterval, logger) })
	reaper := registry.NewReaper(api.Store(), clock, v.Apply, logger)
	wg.Go(func() { reaper.Run(ctx) })

	srv := httptest.NewUnstartedServer(api)
	srv.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelError)
	srv.Start()
	t.Cleanup(func() {
		// Event streams and blocking queries stay open; end them first.
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		wg.Wait()
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &Server{URL: srv.URL, Store: store, View: v}
}
