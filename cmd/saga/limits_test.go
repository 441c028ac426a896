package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The limits of SPEC §6 through the real binary: each refusal is a clear
// JSON error, each slow or silent client is cut off within its timeout,
// and /livez answers throughout.

// startLimited starts saga with the given limits.* settings (SAGA_LIMITS_…).
func startLimited(t *testing.T, limits ...string) *sagaProcess {
	t.Helper()
	return startSaga(t, sagaEnv(t, append([]string{"SAGA_DATA_DIR=" + t.TempDir()}, limits...)...), "serve", "--port", "0")
}

// clientFrom is an HTTP client whose connections come from the loopback
// address local: another client as far as the limits can tell.
func clientFrom(t *testing.T, local string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// limitsGet sends a GET with client and returns the status, the
// Retry-After and the decoded error body, if any.
func limitsGet(t *testing.T, client *http.Client, url string) (int, string, e2eErrorBody) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body e2eErrorBody
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: %d with a body that is not a JSON error: %v", url, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

// wantLivez fails the test unless /livez answers 200 at once.
func wantLivez(t *testing.T, p *sagaProcess) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(p.url("/livez"))
	if err != nil {
		t.Fatalf("livez: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("livez: %d", resp.StatusCode)
	}
}

func TestLimitsRateRefusesThenRecovers(t *testing.T) {
	p := startLimited(t, "SAGA_LIMITS_READ_RATE=1", "SAGA_LIMITS_READ_BURST=3")
	client := clientFrom(t, "127.0.0.1")
	var status int
	var retry string
	var body e2eErrorBody
	for range 10 { // the burst, then past it
		if status, retry, body = limitsGet(t, client, p.url("/api/v1/services")); status != http.StatusOK {
			break
		}
	}
	if status != http.StatusTooManyRequests || body.Error.Code != "rate_limited" || !strings.Contains(body.Error.Message, "limits.read_rate") {
		t.Fatalf("past the rate: %d %+v", status, body)
	}
	seconds := e2eAtoi(t, retry)
	if seconds < 1 {
		t.Fatalf("Retry-After %q", retry)
	}
	// Another client and the probes are not held back meanwhile.
	if status, _, _ := limitsGet(t, clientFrom(t, "127.0.0.2"), p.url("/api/v1/services")); status != http.StatusOK {
		t.Errorf("another client: %d", status)
	}
	wantLivez(t, p)

	time.Sleep(time.Duration(seconds) * time.Second)
	if status, _, body := limitsGet(t, client, p.url("/api/v1/services")); status != http.StatusOK {
		t.Fatalf("after Retry-After: %d %+v", status, body)
	}
}

func TestLimitsStreamsPerClient(t *testing.T) {
	p := startLimited(t, "SAGA_LIMITS_MAX_STREAMS_PER_CLIENT=2")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := clientFrom(t, "127.0.0.1")
	client.Timeout = 0 // streams stay open
	open := func() *http.Response {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url("/api/v1/events"), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	for i := range 2 {
		if resp := open(); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	resp := open()
	var body e2eErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("third stream: %d, body not a JSON error: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || body.Error.Code != "rate_limited" ||
		!strings.Contains(body.Error.Message, "2 event streams open (limits.max_streams_per_client)") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d %+v", resp.StatusCode, body)
	}

	other := clientFrom(t, "127.0.0.2")
	if status, _, body := limitsGet(t, other, p.url("/api/v1/services/web")); status != http.StatusOK {
		t.Fatalf("a lookup from another client: %d %+v", status, body)
	}
	wantLivez(t, p)
}

// readsCut tells whether the server ends c within within: a read returns
// EOF or a reset, rather than nothing.
func readsCut(t *testing.T, c net.Conn, within time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

func TestLimitsSlowClientsAreCutOff(t *testing.T) {
	p := startLimited(t,
		"SAGA_LIMITS_HEADER_TIMEOUT=1s", "SAGA_LIMITS_BODY_TIMEOUT=1s", "SAGA_LIMITS_IDLE_TIMEOUT=1s",
		"SAGA_LIMITS_STREAM_WRITE_TIMEOUT=1s", "SAGA_LIMITS_WRITE_RATE=0")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("slow headers", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: saga\r\n") // and never the blank line
		if !readsCut(t, c, 5*time.Second) {
			t.Error("a client that never finishes its headers is still connected after 5s")
		}
		wantLivez(t, p)
	})
	t.Run("slow body", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST /api/v1/services/web/instances HTTP/1.1\r\nHost: saga\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":")
		if !readsCut(t, c, 5*time.Second) {
			t.Error("a client that sends its body a byte at a time is still connected after 5s")
		}
		wantLivez(t, p)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: saga\r\n\r\n")
		if !readsCut(t, c, 5*time.Second) { // the answer, then the close
			t.Error("an idle keep-alive connection is still open after 5s")
		}
	})
	t.Run("stream reader that stops reading", func(t *testing.T) {
		// A tiny receive buffer, set before connecting, so the server's
		// writes fill it soon.
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		fmt.Fprint(c, "GET /api/v1/events HTTP/1.1\r\nHost: saga\r\n\r\n")
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
			t.Fatalf("stream: %q %v", line, err)
		}
		waitMetric(t, p, "saga_http_event_streams_open 1")

		// Fewer events than a subscriber may fall behind, but megabytes of
		// them: the stream's writes block on this client, which reads no more.
		meta := map[string]string{}
		for i := range 64 {
			meta[fmt.Sprintf("k%02d", i)] = strings.Repeat("x", 512)
		}
		for i := range 200 {
			body := map[string]any{"id": fmt.Sprintf("i%03d", i), "address": "10.0.0.1", "port": 80, "metadata": meta}
			if status := e2eDo(t, http.MethodPost, p.url("/api/v1/services/big/instances"), body, nil); status != http.StatusCreated {
				t.Fatalf("register %d: %d", i, status)
			}
		}
		wantLivez(t, p)
		waitMetric(t, p, "saga_http_event_streams_open 0")
		if strings.Contains(p.logs.String(), "fell behind") {
			t.Error("the stream was dropped for falling behind, not cut off by its write timeout")
		}
	})
}

func TestLimitsIdleConnectionsPastTheBudget(t *testing.T) {
	p := startLimited(t, "SAGA_LIMITS_MAX_CONNECTIONS=5")
	var conns []net.Conn
	for i := range 12 {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: saga\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_ = resp.Body.Close()
		conns = append(conns, c)
		time.Sleep(20 * time.Millisecond) // let the server mark it idle
	}
	wantLivez(t, p)
	wantLivez(t, p)
	cut := 0
	for _, c := range conns[:6] {
		if readsCut(t, c, 200*time.Millisecond) {
			cut++
		}
	}
	if cut != 6 {
		t.Errorf("%d of the 6 oldest idle connections closed, want all", cut)
	}
	if _, err := p.logs.WaitRecord("too many open connections; closing idle ones, and new ones when none is idle (limits.max_connections)", 5*time.Second, p.exited); err != nil {
		t.Error(err)
	}
}

// waitMetric waits until /metrics has line.
func waitMetric(t *testing.T, p *sagaProcess, line string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.url("/metrics"))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.Contains(string(b), line+"\n") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never had %q", line)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
