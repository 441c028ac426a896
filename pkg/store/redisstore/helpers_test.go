package redisstore_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// open opens a store closed by t.Cleanup, logging to the test's output.
func open(t testing.TB, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(t.Context(), opts, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.URL, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// tlsOptions are the options for the TLS server's rediss:// URL.
func tlsOptions(srv *redistest.Server) redisstore.Options {
	return redisstore.Options{
		URL:        srv.URL(),
		CAFile:     srv.TLS.CAFile,
		CertFile:   srv.TLS.CertFile,
		KeyFile:    srv.TLS.KeyFile,
		ServerName: srv.TLS.ServerName,
	}
}

// waitChange returns the first event on changes that match accepts, or
// fails the test after timeout.
func waitChange(t testing.TB, changes <-chan registry.Event, timeout time.Duration, match func(registry.Event) bool) registry.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-changes:
			if !ok {
				t.Fatal("Changes closed")
			}
			if match(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no matching event on Changes within %s", timeout)
		}
	}
}

func isEvent(typ registry.EventType, service, id string) func(registry.Event) bool {
	return func(ev registry.Event) bool {
		return ev.Type == typ && ev.Service == service && ev.Instance.ID == id
	}
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the outage tests cause many.
	redisstore.RouteClientLogs(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
