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
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ceilingServer is a child process of saga-bench that answers every request
// with one captured answer of Saga's: the most a Go HTTP server on this
// machine can do for the same bytes. A process of its own, like Saga, so
// that it does not share the load generator's scheduler.
type ceilingServer struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	file   string
	target *target
}

// startCeiling starts the ceiling server for a and waits for its address.
func startCeiling(ctx context.Context, a answer, clients int) (_ *ceilingServer, err error) {
	f, err := os.CreateTemp("", "saga-bench-answer-*.json")
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	c := &ceilingServer{file: f.Name()}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	err = json.NewEncoder(f).Encode(a)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("ceiling: write the answer: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-serve-ceiling", f.Name())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ceiling: start %s: %w", exe, err)
	}
	c.cmd, c.stdin = cmd, stdin
	addr, err := readAddr(stdout, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	if c.target, err = newTarget(addr, clients, "", nil); err != nil {
		return nil, err
	}
	return c, nil
}

// readAddr reads the first line the child prints: its listening address.
func readAddr(r io.Reader, timeout time.Duration) (string, error) {
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			return "", errors.New("the server exited before it listened")
		}
		return addr, nil
	case <-time.After(timeout):
		return "", errors.New("the server did not start listening")
	}
}

// stop ends the child (closing its stdin tells it to) and removes its file.
func (c *ceilingServer) stop() {
	if c.cmd != nil {
		_ = c.stdin.Close()
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	_ = os.Remove(c.file)
}

// serveCeiling is the child's side: it answers every request with the
// answer in file until its stdin closes.
func serveCeiling(ctx context.Context, file string, stdin io.Reader, stdout io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: ceilingHandler(a), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin) // the parent closes stdin, or dies
		cancel()
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintln(stdout, "http://"+ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ceilingHandler writes a's bytes and does nothing else.
func ceilingHandler(a answer) http.Handler {
	length := strconv.Itoa(len(a.Body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		for k, v := range a.Header {
			h.Set(k, v)
		}
		h.Set("Content-Length", length)
		w.WriteHeader(a.Status)
		_, _ = w.Write(a.Body)
	})
}
