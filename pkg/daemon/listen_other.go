//go:build !linux

package daemon

import (
	"log/slog"
	"net"
)

// listen binds addr; only Linux has systemd to keep the socket.
func listen(addr string, _ *slog.Logger) (net.Listener, error) {
	return bind(addr, false)
}
