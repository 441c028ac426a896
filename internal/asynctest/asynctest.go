// Package asynctest holds what a test needs to watch code that runs beside
// it, a server in a goroutine or in another process: a log buffer that the
// code writes while the test reads and waits on it, polling until a
// condition holds, and free loopback ports to serve on.
package asynctest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PollInterval is how long Poll and Eventually wait between two tries.
const PollInterval = 20 * time.Millisecond

// Poll calls cond every PollInterval until it returns nil, and then returns
// nil. Once timeout has passed it returns cond's last error instead.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(PollInterval)
	}
}

// Eventually polls cond like Poll and returns how long it took to hold. It
// fails the test with what and cond's last error when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
	return time.Since(start)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback host:port that nothing listened on a moment
// ago: one to serve on, or one where a connection is refused.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// ErrStopped is what LogBuffer.Wait returns when its stop channel closes
// before the buffer holds what it waits for.
var ErrStopped = errors.New("the writer stopped")

// LogBuffer is an io.Writer that goroutines or a child process write while
// the test reads it and waits on it. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// changed is closed by the next Write; nil while nobody waits.
	changed chan struct{}
}

// Write appends p and wakes the waiters.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Wait returns nil as soon as found reports true for everything written so
// far. It returns an error when timeout passes first, or ErrStopped when
// stop (which may be nil) is closed first.
func (b *LogBuffer) Wait(timeout time.Duration, stop <-chan struct{}, found func(text string) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		text := b.buf.String()
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if found(text) {
			return nil
		}
		select {
		case <-changed:
		case <-stop:
			return ErrStopped
		case <-deadline.C:
			return fmt.Errorf("not within %s", timeout)
		}
	}
}

// Record returns the first JSON line (as slog's JSON handler writes them)
// whose "msg" is msg. Lines that are not JSON are passed over.
func (b *LogBuffer) Record(msg string) (map[string]any, bool) {
	return record(b.String(), msg)
}

// WaitRecord waits like Wait until a JSON line whose "msg" is msg has been
// written, and returns it.
func (b *LogBuffer) WaitRecord(msg string, timeout time.Duration, stop <-chan struct{}) (map[string]any, error) {
	var rec map[string]any
	err := b.Wait(timeout, stop, func(text string) bool {
		var ok bool
		rec, ok = record(text, msg)
		return ok
	})
	if err != nil {
		return nil, fmt.Errorf("no %q log line: %w", msg, err)
	}
	return rec, nil
}

func record(text, msg string) (map[string]any, bool) {
	for line := range strings.Lines(text) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec, true
		}
	}
	return nil, false
}
