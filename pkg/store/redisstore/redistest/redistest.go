// Package redistest starts real Redis processes for tests: a standalone
// server, a TLS server with certificates made on the spot, a master with a
// replica watched by three sentinels, and a three-master Redis Cluster. Each
// runs on free loopback ports in a temporary directory and is stopped by
// t.Cleanup, so tests never depend on a Redis someone else started.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/internal/asynctest"
)

// startTimeout bounds how long a process may take to answer PING.
const startTimeout = 15 * time.Second

// Server is one redis-server (or redis-sentinel) process.
type Server struct {
	// Addr is host:port of the server on loopback.
	Addr string
	// Dir is the server's working directory (its log, AOF and config).
	Dir string
	// TLS is set for a server started by StartTLS.
	TLS *TLSFiles

	t        testing.TB
	program  string
	args     []string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	sentinel bool
}

// Start runs a standalone redis-server with append-only persistence, so a
// Stop and Restart keep its data.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, "redis", nil, func(port int) []string {
		return []string{"--port", strconv.Itoa(port)}
	})
}

// StartTLS runs a redis-server that speaks only TLS and requires a client
// certificate. The certificates are made for this test in its directory.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	files := WriteCertificates(t, t.TempDir())
	return startServer(t, "redis-tls", files, func(port int) []string {
		return []string{
			"--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", files.ServerCertFile, "--tls-key-file", files.ServerKeyFile,
			"--tls-ca-cert-file", files.CAFile, "--tls-auth-clients", "yes",
		}
	})
}

// URL is the address in Saga's URL form: redis:// or rediss://.
func (s *Server) URL() string {
	if s.TLS != nil {
		return "rediss://" + s.Addr
	}
	return "redis://" + s.Addr
}

// Client returns a plain go-redis client for the server, closed by
// t.Cleanup: for a test to look at or change what is stored.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(s.options())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) options() *goredis.Options {
	opts := &goredis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second}
	if s.TLS != nil {
		opts.TLSConfig = s.TLS.ClientConfig(s.t)
	}
	return opts
}

// Stop ends the server with SIGTERM, which flushes its append-only file, and
// waits for it to exit. Restart brings it back with its data.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server at once with SIGKILL, as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatalf("restart %s: %v", s.Addr, err)
	}
}

// Running reports whether the process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// startServer picks free ports and starts a server, trying again with other
// ports when one was taken between choosing it and binding it.
func startServer(t testing.TB, name string, files *TLSFiles, portArgs func(port int) []string) *Server {
	t.Helper()
	return startProgram(t, "redis-server", name, files, false, func(port int, dir string) []string {
		args := []string{
			"--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no",
			"--logfile", filepath.Join(dir, "redis.log"),
			"--save", "", "--appendonly", "yes",
		}
		return append(args, portArgs(port)...)
	})
}

func startProgram(t testing.TB, program, name string, files *TLSFiles, sentinel bool, argsFor func(port int, dir string) []string) *Server {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		t.Fatalf("%s is not installed (make test-deps installs it): %v", program, err)
	}
	var lastErr error
	for range 5 {
		port := asynctest.FreePort(t)
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, TLS: files,
			t: t, program: program, args: argsFor(port, dir), sentinel: sentinel,
		}
		if err := s.launch(); err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(s.Kill)
		return s
	}
	t.Fatalf("start %s: %v", program, lastErr)
	return nil
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch() error {
	cmd := exec.Command(s.program, s.args...)
	cmd.Dir = s.Dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	opts := s.options()
	client := goredis.NewClient(opts)
	defer func() { _ = client.Close() }()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		if err == nil {
			// Another test's server may hold the port this one was given
			// (free ports are picked before they are bound): only ours counts.
			pid, perr := infoField(ctx, client, "server", "process_id")
			cancel()
			if perr == nil && pid == strconv.Itoa(cmd.Process.Pid) {
				return nil
			}
			_ = cmd.Process.Kill()
			<-exited
			if perr != nil {
				return fmt.Errorf("%s: read the process id of the server answering: %w", s.Addr, perr)
			}
			return fmt.Errorf("%s answered by another process (pid %s)", s.Addr, pid)
		}
		cancel()
		select {
		case <-exited:
			return fmt.Errorf("%s exited: %s%s", s.program, stderr.String(), s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s on %s did not answer PING within %s: %w%s", s.program, s.Addr, startTimeout, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	data, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return "\n" + strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// infoField reads one field of INFO section from addr.
func infoField(ctx context.Context, c *goredis.Client, section, field string) (string, error) {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v, nil
		}
	}
	return "", errors.New(field + " missing from INFO " + section)
}
