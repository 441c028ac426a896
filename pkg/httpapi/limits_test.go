package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/server"
)

func withLimits(l httpapi.Limits) func(*server.Options) {
	return func(o *server.Options) { o.Limits = l }
}

// wantLimited checks a refusal by a limit: status, code, the key its
// message names and a Retry-After of whole seconds.
func wantLimited(t *testing.T, rec *httptest.ResponseRecorder, status int, code, key, retryAfter string) {
	t.Helper()
	wantError(t, rec, status, code, "")
	var e apiError
	decode(t, rec, &e)
	if !strings.Contains(e.Error.Message, key) {
		t.Errorf("message %q does not name %s", e.Error.Message, key)
	}
	if got := rec.Header().Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
}

func TestRateLimitAnswers429AndRecovers(t *testing.T) {
	h := newHarness(t, withLimits(httpapi.Limits{ReadRate: 1, ReadBurst: 2, WriteRate: 1, WriteBurst: 1}))
	for range 2 {
		if rec := h.do(t, http.MethodGet, "/api/v1/services", ""); rec.Code != http.StatusOK {
			t.Fatalf("within the burst: %d %s", rec.Code, rec.Body)
		}
	}
	wantLimited(t, h.do(t, http.MethodGet, "/api/v1/services/web", ""), 429, "rate_limited", "limits.read_rate", "1")

	// Writes have a bucket of their own; the probes have none.
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	wantLimited(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""), 429, "rate_limited", "limits.write_rate", "1")
	for range 5 {
		if rec := h.do(t, http.MethodGet, "/livez", ""); rec.Code != http.StatusOK {
			t.Fatalf("livez over the read rate: %d", rec.Code)
		}
	}

	h.clock.Advance(time.Second)
	if rec := h.do(t, http.MethodGet, "/api/v1/services/web", ""); rec.Code != http.StatusOK {
		t.Fatalf("after a second: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""); rec.Code != http.StatusOK {
		t.Fatalf("heartbeat after a second: %d %s", rec.Code, rec.Body)
	}

	// Another client (another address) has its own bucket.
	req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("another client: %d", rec.Code)
	}

	h.clock.Advance(time.Minute) // for /metrics, itself a read
	metrics := h.do(t, http.MethodGet, "/metrics", "").Body.String()
	for _, want := range []string{`saga_http_rate_limited_total{kind="read"} 1`, `saga_http_rate_limited_total{kind="write"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestSetLimitsAppliesWhileServing(t *testing.T) {
	h := newHarness(t)
	for range 20 {
		if rec := h.do(t, http.MethodGet, "/api/v1/services", ""); rec.Code != http.StatusOK {
			t.Fatalf("unlimited: %d", rec.Code)
		}
	}
	h.api.SetLimits(httpapi.Limits{ReadRate: 1, ReadBurst: 1})
	h.do(t, http.MethodGet, "/api/v1/services", "")
	wantLimited(t, h.do(t, http.MethodGet, "/api/v1/services", ""), 429, "rate_limited", "limits.read_rate", "1")
}

func TestInstanceCap(t *testing.T) {
	h := newHarness(t, withLimits(httpapi.Limits{MaxInstances: 2}))
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	h.register(t, "db", `{"id":"b","address":"10.0.0.2","port":80}`)
	wantLimited(t, h.do(t, http.MethodPost, "/api/v1/services/web/instances", `{"id":"c","address":"10.0.0.3","port":80}`),
		429, "rate_limited", "limits.max_instances", "5")
	// Replacing a registration is always allowed.
	if rec := h.do(t, http.MethodPost, "/api/v1/services/web/instances", `{"id":"a","address":"10.0.0.9","port":81}`); rec.Code != http.StatusOK {
		t.Fatalf("re-register at the cap: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(t, http.MethodDelete, "/api/v1/services/db/instances/b", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("deregister: %d", rec.Code)
	}
	h.register(t, "web", `{"id":"c","address":"10.0.0.3","port":80}`)
}

// getFrom sends a GET from the given local loopback address, so that
// clients can be told apart without tokens.
func getFrom(t *testing.T, srv *httptest.Server, local, path string) *http.Response {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)},
	}).DialContext}}
	t.Cleanup(client.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
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

// asRecorder reads a refusal into a recorder, for wantLimited.
func asRecorder(t *testing.T, resp *http.Response) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	rec.Code = resp.StatusCode
	if _, err := io.Copy(rec.Body, resp.Body); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestStreamAndBlockingCaps(t *testing.T) {
	h := newHarness(t, withLimits(httpapi.Limits{
		MaxStreamsPerClient: 2, MaxStreams: 3,
		MaxBlockingQueriesPerClient: 1, MaxBlockingQueries: 2,
	}))
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)
	t.Cleanup(h.api.EndLongLived) // lets srv.Close return

	open := func(local string) *http.Response {
		resp := getFrom(t, srv, local, "/api/v1/events")
		if resp.StatusCode == http.StatusOK {
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		return resp
	}
	for _, local := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		if resp := open(local); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream from %s: %d", local, resp.StatusCode)
		}
	}
	wantLimited(t, asRecorder(t, open("127.0.0.1")), 429, "rate_limited", "limits.max_streams_per_client", "5")
	wantLimited(t, asRecorder(t, open("127.0.0.3")), 503, "unavailable", "limits.max_streams)", "5")

	// Blocking queries are counted apart from streams.
	block := "/api/v1/services/web?index=0&wait=1m" // no such service yet: index 0 until one registers
	done := make(chan *http.Response, 2)
	for _, local := range []string{"127.0.0.1", "127.0.0.2"} {
		go func() { done <- getFrom(t, srv, local, block) }()
	}
	waitFor(t, func() bool {
		return strings.Contains(h.do(t, http.MethodGet, "/metrics", "").Body.String(), "saga_http_blocking_queries_open 2")
	})
	wantLimited(t, asRecorder(t, getFrom(t, srv, "127.0.0.1", block)), 429, "rate_limited", "limits.max_blocking_queries_per_client", "5")
	wantLimited(t, asRecorder(t, getFrom(t, srv, "127.0.0.3", block)), 503, "unavailable", "limits.max_blocking_queries)", "5")
	if resp := getFrom(t, srv, "127.0.0.3", "/api/v1/services/web"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a plain lookup at the caps: %d", resp.StatusCode)
	}

	metrics := h.do(t, http.MethodGet, "/metrics", "").Body.String()
	for _, want := range []string{
		"saga_http_event_streams_open 3",
		`saga_http_rate_limited_total{kind="stream"} 2`,
		`saga_http_rate_limited_total{kind="blocking"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	h.api.EndLongLived()
	for range 2 {
		<-done
	}
}

func TestSlowBodyIsCutOff(t *testing.T) {
	h := newHarness(t, withLimits(httpapi.Limits{BodyTimeout: 200 * time.Millisecond}))
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":"a","address":"10.0.0.1","port":80}`
	fmt.Fprintf(conn, "POST /api/v1/services/web/instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:5])
	began := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // guards against a hang only
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("cut off after %s", took)
	}

	// A body sent in time is not held to the deadline afterwards.
	if rec := h.do(t, http.MethodPost, "/api/v1/services/web/instances", body); rec.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
