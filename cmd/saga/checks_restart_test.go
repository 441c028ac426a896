package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flipTarget is an HTTP health endpoint whose answer the test sets, and
// that counts the probes it sees.
type flipTarget struct {
	status atomic.Int32
	probes atomic.Int64
	host   string
	port   int
}

func startFlipTarget(t *testing.T) *flipTarget {
	t.Helper()
	ft := &flipTarget{}
	ft.status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ft.probes.Add(1)
		w.WriteHeader(int(ft.status.Load()))
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	ft.host = host
	ft.port, _ = strconv.Atoi(port)
	return ft
}

// e2eChecked is what the test reads of an instance with checks.
type e2eChecked struct {
	Status string `json:"status"`
	Checks []struct {
		HTTP   string `json:"http"`
		Status string `json:"status"`
		Output string `json:"output"`
	} `json:"checks"`
}

// waitStatus polls the instance until it and its check have status, and
// returns it.
func waitStatus(t *testing.T, p *sagaProcess, status string, within time.Duration) e2eChecked {
	t.Helper()
	deadline := time.Now().Add(within)
	var in e2eChecked
	for {
		in = e2eChecked{}
		code := e2eDo(t, http.MethodGet, p.url("/api/v1/services/db/instances/db-1"), nil, &in)
		if code == http.StatusOK && in.Status == status && len(in.Checks) == 1 && in.Checks[0].Status == status {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the instance is %+v (status %d), want it and its check %s", within, in, code, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Checks are part of the registration in the store: after a restart on
// the same data dir, the real binary runs them again and the instance's
// status follows the target.
func TestChecksSurviveRestart(t *testing.T) {
	t.Parallel()
	target := startFlipTarget(t)
	env := sagaEnv(t)
	args := []string{"serve", "--port", "0", "--data-dir", t.TempDir()}

	p := startSaga(t, env, args...)
	body := map[string]any{"id": "db-1", "address": target.host, "port": target.port, "ttl_seconds": 30,
		"checks": []map[string]any{{"http": "/health", "interval": "1s", "timeout": "500ms", "failures_before_critical": 1}}}
	if code := e2eDo(t, http.MethodPost, p.url("/api/v1/services/db/instances"), body, nil); code != http.StatusCreated {
		t.Fatalf("register: status %d", code)
	}
	waitStatus(t, p, "passing", 10*time.Second)

	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("saga exited %d after SIGTERM", code)
	}
	stopped := target.probes.Load()

	p = startSaga(t, env, args...)
	deadline := time.Now().Add(10 * time.Second)
	for target.probes.Load() < stopped+2 {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the target saw %d probes in 10s, want the check running again", target.probes.Load()-stopped)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitStatus(t, p, "passing", 10*time.Second)

	target.status.Store(http.StatusInternalServerError)
	in := waitStatus(t, p, "critical", 10*time.Second)
	if !strings.Contains(in.Checks[0].Output, "500") {
		t.Errorf("the critical check's output is %q, want the 500 it saw", in.Checks[0].Output)
	}
	target.status.Store(http.StatusOK)
	waitStatus(t, p, "passing", 10*time.Second)
}
