package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/store/embedded"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Server.Port = 0
	cfg.Storage.Path = t.TempDir()
	return &cfg
}

// startDaemon runs a daemon until the test ends and returns its address.
func startDaemon(t *testing.T, cfg *config.Config) (addr string, logs *asynctest.LogBuffer, stop func() error) {
	t.Helper()
	logs = &asynctest.LogBuffer{}
	d := New(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Version: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	rec, err := logs.WaitRecord("serving", 10*time.Second, nil)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, logs)
	}
	return rec["addr"].(string), logs, stop
}

func TestRunServesThenShutsDownAndClosesTheStore(t *testing.T) {
	cfg := testConfig(t)
	addr, logs, stop := startDaemon(t, cfg)

	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
	body := strings.NewReader(`{"id":"a","address":"10.0.0.1","port":80,"ttl_seconds":3600}`)
	resp, err = http.Post("http://"+addr+"/api/v1/services/web/instances", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after a clean shutdown", err)
	}
	if _, ok := logs.Record("stopped serving"); !ok {
		t.Error("no log of the end of serving")
	}
	// The store was closed: its lock is free and the registration is on disk.
	s, err := embedded.Open(cfg.Storage.Path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reopen the store after shutdown: %v", err)
	}
	defer s.Close()
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Services["web"].Instances; len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("after shutdown the store holds %+v, want web/a", got)
	}
}

func TestRunReportsABusyPortInOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Server.Port = ln.Addr().(*net.TCPAddr).Port
	err = New(Options{Config: cfg}).Run(context.Background())
	want := fmt.Sprintf("listen on 127.0.0.1:%d: bind: address already in use", cfg.Server.Port)
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %s", err, want)
	}
}

func TestRunReportsAnUnusableDataDir(t *testing.T) {
	cfg := testConfig(t)
	addr, _, _ := startDaemon(t, cfg) // holds the data directory's lock
	_ = addr
	err := New(Options{Config: cfg}).Run(context.Background())
	if !errors.Is(err, embedded.ErrInUse) || !strings.HasPrefix(err.Error(), "open store: ") {
		t.Fatalf("Run on a data dir in use = %v, want open store: … ErrInUse", err)
	}
}

func TestRunNotifiesSystemd(t *testing.T) {
	// The real notify protocol: a datagram socket named by NOTIFY_SOCKET.
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	_, _, stop := startDaemon(t, testConfig(t))
	readMsg := func() string {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
	// On Linux the listening socket goes to systemd's store first
	// (fdstore.go); then the daemon reports ready.
	msg := readMsg()
	if runtime.GOOS == "linux" {
		if msg != "FDSTORE=1\nFDNAME=http" {
			t.Fatalf("first notification %q, want the listening socket for the store", msg)
		}
		msg = readMsg()
	}
	if msg != "READY=1" {
		t.Fatalf("notification %q, want READY=1", msg)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if msg := readMsg(); msg != "STOPPING=1" {
		t.Fatalf("notification at shutdown %q, want STOPPING=1", msg)
	}
}

func TestBlockingQueryEndsWithServiceUnavailableOnShutdown(t *testing.T) {
	cfg := testConfig(t)
	addr, _, stop := startDaemon(t, cfg)
	type result struct {
		status int
		err    error
	}
	body := strings.NewReader(`{"id":"a","address":"10.0.0.1","port":80}`)
	resp, err := http.Post("http://"+addr+"/api/v1/services/web/instances", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	index := resp.Header.Get("X-Saga-Index")
	if index == "" {
		index = "1" // the first change to a service
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/api/v1/services/web?index=" + index + "&wait=5m")
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond) // let it wait
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case r := <-done:
		if r.err != nil || r.status != http.StatusServiceUnavailable {
			t.Fatalf("blocking query at shutdown: %d, %v; want 503", r.status, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocking query held up the shutdown")
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decode %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestTwoDaemonsShareOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.Redis.URL, cfgB.Redis.URL = srv.URL(), srv.URL()
	addrA, _, _ := startDaemon(t, cfgA)
	addrB, _, _ := startDaemon(t, cfgB)

	var health struct {
		Status  string `json:"status"`
		Storage string `json:"storage"`
		Redis   string `json:"redis"`
	}
	if status := getJSON(t, "http://"+addrB+"/api/v1/health", &health); status != http.StatusOK || health.Storage != "redis" || health.Status != "healthy" {
		t.Fatalf("health on redis: %d %+v", status, health)
	}

	body := strings.NewReader(`{"id":"a","address":"10.0.0.1","port":80,"ttl_seconds":3600}`)
	resp, err := http.Post("http://"+addrA+"/api/v1/services/shared/instances", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register through A: %d", resp.StatusCode)
	}
	// SPEC: a change made through one Saga is visible through every other within 1 s.
	asynctest.Eventually(t, time.Second, "A's registration visible through B", func() error {
		var got struct {
			Instances []struct{ ID string } `json:"instances"`
		}
		getJSON(t, "http://"+addrB+"/api/v1/services/shared", &got)
		if len(got.Instances) != 1 || got.Instances[0].ID != "a" {
			return fmt.Errorf("B answers %+v", got)
		}
		return nil
	})
}

func TestStartsDegradedWhileRedisIsAway(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	cfg := testConfig(t)
	cfg.Redis.URL = srv.URL()
	addr, _, _ := startDaemon(t, cfg) // serves although Redis is down
	if status := getJSON(t, "http://"+addr+"/readyz", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis away: %d, want 503", status)
	}
	srv.Restart()
	asynctest.Eventually(t, 15*time.Second, "readyz 200 after Redis came back", func() error {
		if status := getJSON(t, "http://"+addr+"/readyz", nil); status != http.StatusOK {
			return fmt.Errorf("readyz %d", status)
		}
		return nil
	})
}
