package httpapi

import (
	"net"
	"net/http"

	"github.com/sagaproject/saga/pkg/auth"
)

// clientKey names the client a request comes from, for per-client limits
// (SPEC §6): its token's accessor, else its address.
func clientKey(r *http.Request) string {
	if tok, ok := auth.TokenFrom(r.Context()); ok {
		return "token:" + tok.Accessor
	}
	return "addr:" + remoteIP(r)
}

// remoteIP is the address of the peer, without its port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
