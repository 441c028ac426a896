package httpapi_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEndLongLivedEndsBlockingQueriesAndStreamsOnly(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)

	blocking := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/api/v1/services/web?index=" + h.do(t, http.MethodGet, "/api/v1/services/web", "").Header().Get("X-Saga-Index") + "&wait=5m")
		if err != nil {
			t.Error(err)
		}
		blocking <- resp
	}()
	stream, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	lines := bufio.NewReader(stream.Body)
	if line, err := lines.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("stream's first line %q, %v", line, err)
	}

	h.api.EndLongLived()
	resp := <-blocking
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Fatalf("blocking query after EndLongLived: %d %s, want 503 unavailable with Retry-After", resp.StatusCode, body)
	}
	if rest, _ := io.ReadAll(lines); strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("a stream that had started got %q after EndLongLived, want a clean end", rest)
	}
	// Ordinary reads, and the same routes without ?index=, still answer.
	for _, target := range []string{"/api/v1/services/web", "/api/v1/services", "/livez"} {
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s after EndLongLived: %d, want 200", target, resp.StatusCode)
		}
	}
	// A blocking query that starts after the drain began ends at once.
	current := h.do(t, http.MethodGet, "/api/v1/services", "").Header().Get("X-Saga-Index")
	resp, err = http.Get(srv.URL + "/api/v1/services?wait=5m&index=" + current)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("blocking query started after the drain: %d, want 503 at once", resp.StatusCode)
	}
}
