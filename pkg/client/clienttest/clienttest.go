// Package clienttest starts a real Saga API for tests of code that talks
// to it (the client, the command line, the load tool): the HTTP API over
// the embedded store in a temp dir, the in-memory view fed by the store's
// change feed, and the reaper, on a free loopback port.
package clienttest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
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
	srv, err := server.New(context.Background(), server.Options{
		Store:             store,
		Storage:           "embedded",
		Logger:            logger,
		DefaultTTL:        opts.DefaultTTL,
		HeartbeatInterval: opts.HeartbeatInterval,
		KeepAlive:         opts.KeepAlive,
		Version:           "test",
	})
	if err != nil {
		t.Fatalf("assemble server: %v", err)
	}
	srv.Start()
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelError)
	hs.Start()
	t.Cleanup(func() {
		srv.API().EndLongLived() // event streams and blocking queries stay open otherwise
		hs.CloseClientConnections()
		hs.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shut down: %v", err)
		}
	})
	return &Server{URL: hs.URL, Store: store, View: srv.View()}
}
