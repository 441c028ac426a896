package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

// startTimeout bounds how long a saga process may take to serve; generous,
// because a race-detector build on a busy machine starts slowly.
const startTimeout = 30 * time.Second

// sagaProcess is a running `saga` binary.
type sagaProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // host:port it serves on, once it serves
	logs   *asynctest.LogBuffer
	exited chan struct{}
	err    error // the exit error, after exited is closed
}

// sagaEnv is a clean environment for a saga process: its own HOME and
// config dir (so neither ~/.saga nor /etc/saga leak in), plus extra.
func sagaEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"SAGA_CONFIG_DIR=" + home,
		"GORACE=atexit_sleep_ms=0", // a race-detector build otherwise lingers 1s at exit
	}, extra...)
}

// startSaga runs `saga args...` with env and waits until it serves. It is
// killed at the end of the test if still running.
func startSaga(t *testing.T, env []string, args ...string) *sagaProcess {
	t.Helper()
	p := launchSaga(t, env, args...)
	rec, err := p.logs.WaitRecord("serving", startTimeout, p.exited)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, p.logs)
	}
	addr, _ := rec["addr"].(string)
	if addr == "" {
		t.Fatalf("serving log line without addr: %v", rec)
	}
	p.addr = addr
	return p
}

// launchSaga starts the process without waiting for it to serve.
func launchSaga(t *testing.T, env []string, args ...string) *sagaProcess {
	t.Helper()
	p := &sagaProcess{t: t, logs: &asynctest.LogBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(sagaBinary, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in saga %s", strings.Join(args, " "))
		}
		if t.Failed() {
			t.Logf("saga %s output:\n%s", strings.Join(args, " "), p.logs)
		}
	})
	return p
}

func (p *sagaProcess) url(path string) string { return "http://" + p.addr + path }

func (p *sagaProcess) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *sagaProcess) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("saga still running %s after being asked to stop", timeout)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// runSaga runs a saga command to completion and returns its output and
// exit status.
func runSaga(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(sagaBinary, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		t.Fatalf("saga %v did not finish; output:\n%s%s", args, out.String(), errOut.String())
	}
	if strings.Contains(errOut.String(), "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in saga %s:\n%s", strings.Join(args, " "), errOut.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// e2eDo sends a request with an optional JSON body and decodes a JSON
// answer into out (when not nil). It returns the status.
func e2eDo(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, reader)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode
}

// e2eInstance is the part of an instance that the tests look at.
type e2eInstance struct {
	Service string `json:"service"`
	ID      string `json:"id"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

type e2eLookup struct {
	Service   string        `json:"service"`
	Index     uint64        `json:"index"`
	Instances []e2eInstance `json:"instances"`
}

func e2eRegister(t *testing.T, p *sagaProcess, service, id string, ttlSeconds int) {
	t.Helper()
	body := map[string]any{"id": id, "address": "10.0.0.1", "port": 8080, "ttl_seconds": ttlSeconds}
	if status := e2eDo(t, http.MethodPost, p.url("/api/v1/services/"+service+"/instances"), body, nil); status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("register %s/%s: status %d", service, id, status)
	}
}

// e2eEvent is one Server-Sent Event.
type e2eEvent struct {
	Type string
	Data struct {
		Type     string      `json:"type"`
		Service  string      `json:"service"`
		Instance e2eInstance `json:"instance"`
		Index    uint64      `json:"index"`
	}
}

// e2eReadEvents parses an event stream onto a channel until it ends.
func e2eReadEvents(t *testing.T, r io.Reader) <-chan e2eEvent {
	ch := make(chan e2eEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		var ev e2eEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.Data); err != nil {
					t.Errorf("event data %q: %v", line, err)
				}
			case line == "" && ev.Type != "":
				ch <- ev
				ev = e2eEvent{}
			}
		}
	}()
	return ch
}

func e2eAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sendJSON makes one request with a JSON body (when not nil) within
// timeout and returns the answer's status, headers and body.
func sendJSON(ctx context.Context, client *http.Client, timeout time.Duration, method, url string, body any) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reader)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}
