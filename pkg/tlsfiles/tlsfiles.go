// Package tlsfiles loads TLS certificates and CA bundles from PEM files.
// On the server side, Server follows its files as an operator or a
// certificate manager replaces them: new handshakes see the new
// certificate and client CA bundle, open connections keep theirs. On the
// client side, ClientConfig builds a tls.Config from a CA bundle and an
// optional client certificate.
package tlsfiles

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Server hands out the TLS configuration of a server whose certificate,
// key and (optional) client CA bundle live in files. It is safe for
// concurrent use.
type Server struct {
	certFile, keyFile, clientCAFile string

	reloadMu sync.Mutex // one Reload at a time
	current  atomic.Pointer[loaded]
}

// loaded is one consistent reading of the files.
type loaded struct {
	cert, key, clientCA []byte // the files' contents, to tell a change
	config              *tls.Config
	leaf                *x509.Certificate
	// stamps are the files' as stat saw them just before they were read:
	// Watch starts from them, so that a change made between the reading
	// and the start of Watch is not taken as where it starts.
	stamps stamps
}

// NewServer reads the certificate and key (PEM) and, when clientCAFile is
// not empty, the bundle of CAs that client certificates must chain to.
func NewServer(certFile, keyFile, clientCAFile string) (*Server, error) {
	s := &Server{certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile}
	l, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(l)
	return s, nil
}

// MutualTLS reports whether clients must present a certificate.
func (s *Server) MutualTLS() bool { return s.clientCAFile != "" }

// Leaf is the certificate served to new handshakes.
func (s *Server) Leaf() *x509.Certificate { return s.current.Load().leaf }

// TLSConfig is the configuration for tls.NewListener. Each handshake asks
// for the current files' configuration, so a reload reaches every new
// connection and no open one.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.current.Load().config, nil
		},
	}
}

// Reload reads the files again and reports whether their contents changed.
// Files that do not load (a bad PEM block, a key that does not match the
// certificate, a pair caught half-written) leave the current configuration
// in place and return the error.
func (s *Server) Reload() (changed bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	prev := s.current.Load()
	stamps := s.stamps()
	cert, key, clientCA, err := s.read()
	if err != nil {
		return false, err
	}
	if bytes.Equal(cert, prev.cert) && bytes.Equal(key, prev.key) && bytes.Equal(clientCA, prev.clientCA) {
		return false, nil
	}
	next, err := s.parse(cert, key, clientCA)
	if err != nil {
		return false, err
	}
	next.stamps = stamps
	s.current.Store(next)
	return true, nil
}

// Watch polls the files every interval until ctx ends, and reloads them
// when one of them changed on disk. It logs one line per reload and one
// per failed attempt; a failure is tried again once the files change again.
func (s *Server) Watch(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	last := s.current.Load().stamps
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		// Stat before reading: a write that lands in between shows up as
		// a change at the next tick.
		now := s.stamps()
		if now == last {
			continue
		}
		last = now
		changed, err := s.Reload()
		switch {
		case err != nil:
			logger.Error("reloading the TLS files failed; new connections get the previous certificate", "err", err)
		case changed:
			logger.Info("reloaded the TLS files", s.LogAttrs()...)
		}
	}
}

// LogAttrs describe the served certificate in a log line.
func (s *Server) LogAttrs() []any {
	leaf := s.Leaf()
	attrs := []any{"cert_file", s.certFile, "subject", leaf.Subject.String(),
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	if s.clientCAFile != "" {
		attrs = append(attrs, "client_ca_file", s.clientCAFile)
	}
	return attrs
}

// stamp tells whether a file may have changed without reading it.
type stamp struct {
	modTime int64
	size    int64
	inode   uint64
	err     string
}

type stamps [3]stamp

func (s *Server) stamps() stamps {
	return stamps{statFile(s.certFile), statFile(s.keyFile), statFile(s.clientCAFile)}
}

func statFile(path string) stamp {
	if path == "" {
		return stamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{err: err.Error()}
	}
	return stamp{modTime: fi.ModTime().UnixNano(), size: fi.Size(), inode: inode(fi)}
}

func (s *Server) load() (*loaded, error) {
	stamps := s.stamps()
	cert, key, clientCA, err := s.read()
	if err != nil {
		return nil, err
	}
	l, err := s.parse(cert, key, clientCA)
	if err != nil {
		return nil, err
	}
	l.stamps = stamps
	return l, nil
}

func (s *Server) read() (cert, key, clientCA []byte, err error) {
	if cert, err = os.ReadFile(s.certFile); err != nil {
		return nil, nil, nil, fmt.Errorf("read certificate: %w", err)
	}
	if key, err = os.ReadFile(s.keyFile); err != nil {
		return nil, nil, nil, fmt.Errorf("read key: %w", err)
	}
	if s.clientCAFile != "" {
		if clientCA, err = os.ReadFile(s.clientCAFile); err != nil {
			return nil, nil, nil, fmt.Errorf("read client CA bundle: %w", err)
		}
	}
	return cert, key, clientCA, nil
}

func (s *Server) parse(certPEM, keyPEM, clientCAPEM []byte) (*loaded, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", s.certFile, s.keyFile, err)
	}
	config := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// HTTP/1.1 only, as on the plain port: blocking queries and event
		// streams each hold a connection of their own.
		NextProtos: []string{"http/1.1"},
	}
	if s.clientCAFile != "" {
		pool, err := certPool(s.clientCAFile, clientCAPEM)
		if err != nil {
			return nil, err
		}
		config.ClientCAs = pool
		config.ClientAuth = tls.RequireAndVerifyClientCert
		// A resumed session skips verifying the client's certificate, so
		// a CA taken out of the bundle would still let its clients in.
		config.SessionTicketsDisabled = true
	}
	return &loaded{cert: certPEM, key: keyPEM, clientCA: clientCAPEM, config: config, leaf: pair.Leaf}, nil
}

// certPool parses a PEM bundle of CA certificates; path names it in errors.
func certPool(path string, pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// ClientConfig is the TLS configuration of a client: it trusts the CAs in
// caFile (the system's when caFile is empty) and presents the certificate
// in certFile with the key in keyFile, when they are given (both or
// neither).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		if config.RootCAs, err = certPool(caFile, data); err != nil {
			return nil, err
		}
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "":
		return nil, errors.New("a client key needs its certificate: the certificate file is not set")
	case keyFile == "":
		return nil, errors.New("a client certificate needs its key: the key file is not set")
	default:
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}
