package daemon

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// rebindWait bounds how long a bind waits for systemd to close a stale
// stored socket that holds the port.
const rebindWait = 2 * time.Second

// bind listens on addr. After dropping a stale socket it retries for a
// moment, since systemd closes its copy asynchronously.
func bind(addr string, stale bool) (net.Listener, error) {
	deadline := time.Now().Add(rebindWait)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if !stale || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			var opErr *net.OpError
			if errors.As(err, &opErr) {
				err = opErr.Err
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
