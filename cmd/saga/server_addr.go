package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/config"
)

// serverAddr decides which server a client command talks to: --server,
// else SAGA_ADDR, else the local server, found from the configuration that
// `saga serve` would read in this environment (see localServerAddr). For
// the local server serving TLS, serverCert is its certificate file.
//
// A configuration that cannot be read must not stop a health check, so it
// does not fail the command: the address is then client.DefaultAddr, and
// note says why, for the caller to print or not.
func (a *app) serverAddr(flag string) (addr, serverCert string, note error) {
	if flag != "" {
		return flag, "", nil
	}
	if env := a.getenv("SAGA_ADDR"); env != "" {
		return env, "", nil
	}
	addr, serverCert, err := localServerAddr(a.configOptions(nil))
	if err != nil {
		return client.DefaultAddr, "", fmt.Errorf("ignoring the configuration for the server's address: %w; asking %s", err, client.DefaultAddr)
	}
	return addr, serverCert, nil
}

// localServerAddr returns the URL of the server that the configuration
// describes: the same layers as `saga serve` reads (file, environment with
// the earlier releases' PORT and HOST, defaults). A server listening on
// every interface (0.0.0.0, ::) is asked on the loopback address of that
// family. A server with server.tls.cert_file is asked over https, and
// certFile is that file.
func localServerAddr(opts config.Options) (addr, certFile string, err error) {
	cfg, err := config.Load(opts)
	if err != nil {
		return "", "", err
	}
	if cfg.Server.Port == 0 {
		return "", "", errors.New("server.port is 0: the server picks a free port when it starts")
	}
	host := cfg.Server.Host
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.Is6() {
			host = "::1"
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(cfg.Server.Port))}
	if cfg.Server.TLS.Enabled() {
		u.Scheme = "https"
	}
	return u.String(), cfg.Server.TLS.CertFile, nil
}
