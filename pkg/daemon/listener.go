package daemon

import (
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/sagaproject/saga/pkg/tlsfiles"
)

// switchListener serves the bound socket as plain TCP or as TLS, as the
// configuration says now: a reload that turns TLS on or off, or points it
// at other files, reaches every new connection, while the socket stays
// open and connections already accepted keep what they had.
type switchListener struct {
	net.Listener
	tls atomic.Pointer[tlsServing]
}

// tlsServing is one TLS set-up: the files, and the configuration built
// from them once.
type tlsServing struct {
	files  *tlsfiles.Server
	config *tls.Config
}

// serveTLS makes new connections use files; nil: plain TCP.
func (l *switchListener) serveTLS(files *tlsfiles.Server) {
	if files == nil {
		l.tls.Store(nil)
		return
	}
	l.tls.Store(&tlsServing{files: files, config: files.TLSConfig()})
}

// Accept waits for the next connection and wraps it in TLS when TLS is on.
// The handshake happens on the connection's own goroutine, in net/http.
func (l *switchListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if s := l.tls.Load(); s != nil {
		return tls.Server(conn, s.config), nil
	}
	return conn, nil
}
