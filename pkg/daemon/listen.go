package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
)

// listen binds addr for the API.
func listen(addr string, _ *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr.Err
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
