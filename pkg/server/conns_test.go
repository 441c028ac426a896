package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/server"
	"github.com/sagaproject/saga/pkg/store/embedded"
)

// Keep-alive connections left idle past the budget are closed, oldest
// first, and /livez keeps answering new clients.
func TestIdleConnectionsPastTheBudgetAreClosed(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	store, err := embedded.Open(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Options{Store: store, Logger: logger, MaxConnections: 3})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	// One request each, then left open and idle.
	var idle []net.Conn
	for i := range 6 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if status := rawGet(t, c, "/livez"); status != http.StatusOK {
			t.Fatalf("connection %d: status %d", i, status)
		}
		idle = append(idle, c)
		// The server marks a connection idle just after it answers; a
		// moment apart, they go idle in the order they were opened.
		time.Sleep(50 * time.Millisecond)
	}
	// The fourth, fifth and sixth each pushed out the one idle the longest.
	for i, c := range idle {
		if closed := isClosed(c); closed != (i < 3) {
			t.Errorf("idle connection %d: closed %v, want %v", i, closed, i < 3)
		}
	}
	resp, err := http.Get("http://" + addr + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("livez past the budget: %d", resp.StatusCode)
	}
	if !isClosed(idle[3]) {
		t.Error("livez did not push out the connection idle the longest")
	}
}

// isClosed tells whether the server closed c: a read ends at once rather
// than waiting for an answer that never comes.
func isClosed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	return err != nil && !timedOut
}

func rawGet(t *testing.T, c net.Conn, path string) int {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: saga\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
