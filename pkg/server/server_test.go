package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/server"
	"github.com/sagaproject/saga/pkg/store/embedded"
)

// start assembles a server over an embedded store in a temp dir and
// serves it on a free loopback port.
func start(t *testing.T) (*server.Server, string) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	store, err := embedded.Open(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Options{Store: store, Storage: "embedded", Logger: logger, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Every store call is counted, whoever makes it: the start-up grace and
// snapshot, the follower, the guard's pings, the reaper, the API.
func TestMetricsCountEveryStoreOperationFromStartUp(t *testing.T) {
	srv, url := start(t)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	resp, err := http.Post(url+"/api/v1/services/web/instances", "application/json", strings.NewReader(`{"address":"10.0.0.1","port":80}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	asynctest.Eventually(t, 5*time.Second, "every store operation in /metrics", func() error {
		_, metrics := get(t, url+"/metrics")
		var missing []string
		for _, op := range []string{"grant_grace", "snapshot", "register", "ping", "expire_due"} {
			if !strings.Contains(metrics, `saga_store_operations_total{operation="`+op+`"}`) {
				missing = append(missing, op)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("/metrics records no store operation %v", missing)
		}
		return nil
	})
}

func TestShutdownEndsBlockingQueriesThenClosesTheStore(t *testing.T) {
	srv, url := start(t)
	_, body := get(t, url+"/api/v1/services")
	if !strings.Contains(body, `"index":0`) {
		t.Fatalf("catalogue %s", body)
	}
	blocked := make(chan int, 1)
	go func() {
		code, _ := get(t, url+"/api/v1/services?index=0&wait=5m")
		blocked <- code
	}()
	time.Sleep(200 * time.Millisecond) // let it block

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case code := <-blocked:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("blocking query ended with %d, want 503 (ask again)", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown left a blocking query waiting")
	}
	if _, err := http.Get(url + "/livez"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if err := srv.Store().Ping(context.Background()); err == nil {
		t.Fatal("store still open after shutdown")
	}
}
