package asynctest_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

func TestLogBufferTakesConcurrentWrites(t *testing.T) {
	var b asynctest.LogBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintln(&b, "line")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != 800 {
		t.Fatalf("%d lines, want 800", got)
	}
}

func TestRecordFindsTheFirstJSONLineWithMsg(t *testing.T) {
	var b asynctest.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&b, nil))
	fmt.Fprintln(&b, "WARNING: not JSON")
	logger.Info("serving", "addr", "127.0.0.1:1")
	logger.Info("serving", "addr", "127.0.0.1:2")
	rec, ok := b.Record("serving")
	if !ok || rec["addr"] != "127.0.0.1:1" {
		t.Fatalf("Record(serving) = %v, %v; want the first line", rec, ok)
	}
	if rec, ok := b.Record("stopped"); ok {
		t.Fatalf("Record(stopped) = %v, want none", rec)
	}
}

func TestWaitRecordWakesOnTheWriteThatLogsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b asynctest.LogBuffer
		logger := slog.New(slog.NewJSONHandler(&b, nil))
		start := time.Now()
		go func() {
			time.Sleep(time.Second)
			logger.Info("starting")
			time.Sleep(time.Second)
			logger.Info("serving", "addr", "127.0.0.1:1")
		}()
		rec, err := b.WaitRecord("serving", time.Minute, nil)
		if err != nil || rec["addr"] != "127.0.0.1:1" {
			t.Fatalf("WaitRecord = %v, %v", rec, err)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("WaitRecord returned after %s, want 2s", took)
		}
	})
}

func TestWaitEndsAtTheTimeoutOrWhenStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b asynctest.LogBuffer
		fmt.Fprintln(&b, "starting")
		_, err := b.WaitRecord("serving", 5*time.Second, nil)
		if err == nil || err.Error() != `no "serving" log line: not within 5s` {
			t.Errorf("WaitRecord past its timeout = %v", err)
		}

		stop := make(chan struct{})
		go func() { time.Sleep(time.Second); close(stop) }()
		err = b.Wait(time.Minute, stop, func(text string) bool { return strings.Contains(text, "serving") })
		if !errors.Is(err, asynctest.ErrStopped) {
			t.Errorf("Wait after stop = %v, want ErrStopped", err)
		}
	})
}

func TestPollReturnsNilOnceCondHoldsElseItsLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := asynctest.Poll(time.Second, func() error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("Poll = %v after %d calls, want nil after 3", err, calls)
		}

		calls = 0
		start := time.Now()
		err = asynctest.Poll(time.Second, func() error { calls++; return fmt.Errorf("try %d", calls) })
		if err == nil || err.Error() != fmt.Sprintf("try %d", calls) {
			t.Errorf("Poll past its timeout = %v, want the last try's error", err)
		}
		if took := time.Since(start); took < time.Second || took > time.Second+asynctest.PollInterval {
			t.Errorf("Poll gave up after %s, want 1s", took)
		}
	})
}

// fatalRecorder stands in for a test that Eventually fails.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		took := asynctest.Eventually(t, time.Second, "ready", func() error {
			if n++; n < 5 {
				return errors.New("not yet")
			}
			return nil
		})
		if took != 4*asynctest.PollInterval {
			t.Errorf("Eventually took %s, want 4 polls", took)
		}

		r := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			asynctest.Eventually(r, time.Second, "ready", func() error { return errors.New("health 503") })
		}()
		<-done
		if r.msg != "ready: not within 1s: health 503" {
			t.Errorf("Eventually failed the test with %q", r.msg)
		}
	})
}

func TestFreePortCanBeServedOn(t *testing.T) {
	port := asynctest.FreePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", port, err)
	}
	ln.Close()
}

func TestFreeAddrRefusesConnections(t *testing.T) {
	addr := asynctest.FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q, want a loopback address", addr)
	}
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %s: connected, want refused", addr)
	}
}
