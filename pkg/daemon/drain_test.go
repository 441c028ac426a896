package daemon

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/config"
)

func TestLongLived(t *testing.T) {
	tests := []struct {
		target string
		want   bool
	}{
		{"/api/v1/events", true},
		{"/api/v1/events?service=a", true},
		{"/api/v1/services/web?index=4&wait=30s", true},
		{"/api/v1/services?index=0", true},
		{"/api/v1/services/web", false},
		{"/api/v1/services/web/instances", false},
		{"/livez", false},
	}
	for _, tt := range tests {
		if got := longLived(httptest.NewRequest(http.MethodGet, tt.target, nil)); got != tt.want {
			t.Errorf("longLived(%s) = %v, want %v", tt.target, got, tt.want)
		}
	}
}

func TestDrainerEndsOnlyLongLivedRequests(t *testing.T) {
	d := newDrainer()
	release := make(chan struct{})
	h := d.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // a blocking query cut short writes nothing
		case <-release:
			_, _ = io.WriteString(w, "done")
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	blocking := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/api/v1/services/web?index=3")
		if err != nil {
			t.Error(err)
		}
		blocking <- resp
	}()
	ordinary := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/api/v1/services/web")
		if err != nil {
			t.Error(err)
		}
		ordinary <- resp
	}()

	d.close()
	resp := <-blocking
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Fatalf("blocking query after close: %d %s", resp.StatusCode, body)
	}
	close(release)
	resp = <-ordinary
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "done" {
		t.Fatalf("ordinary request after close: %d %q, want it to finish normally", resp.StatusCode, body)
	}
}

func TestDrainerKeepsStreamsStreaming(t *testing.T) {
	d := newDrainer()
	h := d.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: registered\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the drainer: %v", err)
		}
		<-r.Context().Done() // until the drain ends the stream
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: registered\n" {
		t.Fatalf("first line %q, %v: the event was not flushed", line, err)
	}
	d.close()
	if rest, _ := io.ReadAll(resp.Body); len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("a stream that had started got %q after the drain, want a clean end", rest)
	}
}

func TestNewLoggerFormat(t *testing.T) {
	tests := []struct {
		format string
		json   bool
	}{
		{config.FormatAuto, true}, // a buffer is no terminal
		{config.FormatJSON, true},
		{config.FormatText, false},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		NewLogger(&buf, tt.format, slog.LevelInfo).Info("hello")
		if got := strings.HasPrefix(buf.String(), "{"); got != tt.json {
			t.Errorf("format %s wrote %q", tt.format, buf.String())
		}
	}
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	logger := NewLogger(&buf, config.FormatJSON, level)
	logger.Debug("hidden")
	level.Set(slog.LevelDebug)
	logger.Debug("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Fatalf("the level var does not steer the logger: %q", buf.String())
	}
}
