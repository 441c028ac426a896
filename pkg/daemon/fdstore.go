//go:build linux

package daemon

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
)

// The listening socket outlives the process under systemd: after binding,
// the daemon hands a copy to systemd's file-descriptor store (the unit's
// FileDescriptorStoreMax=1), and systemd passes it back to the next process
// on a restart (LISTEN_FDS, named by LISTEN_FDNAMES). Between the two
// processes the socket stays open, so new connections wait in its backlog
// instead of being refused. Outside systemd nothing of this happens.

// fdName names the HTTP socket in systemd's store.
const fdName = "http"

// listen returns the socket to serve on addr: the one systemd kept from the
// previous process when it is bound to addr, else a new one. Either way it
// is (again) given to systemd to keep.
func listen(addr string, logger *slog.Logger) (net.Listener, error) {
	ln, stale := inherited(addr, logger)
	if ln == nil {
		var err error
		if ln, err = bind(addr, stale); err != nil {
			return nil, err
		}
	}
	if err := storeListener(ln); err != nil {
		logger.Warn("handing the listening socket to systemd failed; a restart will refuse connections for a moment", "err", err)
	}
	return ln, nil
}

// inherited takes the socket that systemd passed, if any. One bound to
// another address than addr (the configuration changed) is removed from
// the store and closed; stale then says so.
func inherited(addr string, logger *slog.Logger) (ln net.Listener, stale bool) {
	for _, f := range activation.Files(true) {
		if f.Name() != fdName || ln != nil {
			_ = f.Close()
			continue
		}
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener made its own copy
		if err != nil {
			logger.Warn("ignoring the socket systemd passed", "err", err)
			continue
		}
		if !sameAddr(addr, l.Addr()) {
			logger.Info("the address changed; binding anew", "was", l.Addr().String(), "now", addr)
			_ = l.Close()
			_ = notifyFDs("FDSTOREREMOVE=1\nFDNAME="+fdName, nil)
			stale = true
			continue
		}
		ln = l
		logger.Info("serving on the socket kept by systemd", "addr", l.Addr().String())
	}
	return ln, stale
}

// sameAddr reports whether got is what listening on want gives: the same
// port (any port for port 0) and the same IP, where every wildcard address
// counts as one (Go listens on "0.0.0.0" as a dual-stack "[::]").
func sameAddr(want string, got net.Addr) bool {
	g, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	w, err := net.ResolveTCPAddr("tcp", want)
	if err != nil {
		return false
	}
	if w.Port != 0 && w.Port != g.Port {
		return false
	}
	if len(w.IP) == 0 || w.IP.IsUnspecified() {
		return g.IP.IsUnspecified()
	}
	return w.IP.Equal(g.IP)
}

// storeListener gives systemd a copy of ln's socket to keep. systemd keeps
// one copy of a socket however often it is sent.
func storeListener(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	err = raw.Control(func(fd uintptr) {
		sendErr = notifyFDs("FDSTORE=1\nFDNAME="+fdName, []int{int(fd)})
	})
	return errors.Join(err, sendErr)
}

// notifyFDs sends state with fds to systemd's notification socket, as
// sd_pid_notify_with_fds does; without NOTIFY_SOCKET it does nothing.
func notifyFDs(state string, fds []int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// A plain socket: Go's net refuses WriteMsgUnix on a connected datagram socket.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = syscall.Close(fd) }()
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	err = syscall.Sendmsg(fd, []byte(state), oob, &syscall.SockaddrUnix{Name: path}, 0)
	return err
}
