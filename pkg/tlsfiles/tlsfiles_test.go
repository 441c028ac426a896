package tlsfiles_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/tlsfiles"
	"github.com/sagaproject/saga/pkg/tlsfiles/tlsfilestest"
)

// echoServer serves s's TLS configuration on loopback and echoes lines.
func echoServer(t *testing.T, s *tlsfiles.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = tls.NewListener(ln, s.TLSConfig())
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := conn.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial makes a new handshake and returns the connection.
func dial(t *testing.T, addr string, config *tls.Config) (*tls.Conn, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, config)
	if err != nil {
		return nil, err
	}
	// Under TLS 1.3 the server's verdict on a client certificate arrives
	// with the first read.
	if err := echo(conn); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

func echo(conn *tls.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(conn).ReadString('\n')
	return err
}

// servedSerial is the serial of the certificate a new handshake sees.
func servedSerial(t *testing.T, addr string, config *tls.Config) string {
	t.Helper()
	conn, err := dial(t, addr, config)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func clientConfig(t *testing.T, dir string, ca *tlsfilestest.CA, client *tlsfilestest.Pair) *tls.Config {
	t.Helper()
	caFile := filepath.Join(dir, "trust-"+ca.Cert.Subject.CommonName+".pem")
	tlsfilestest.WriteFile(t, caFile, ca.PEM)
	var certFile, keyFile string
	if client != nil {
		certFile, keyFile = client.WriteFiles(t, dir, "client-"+client.Cert.SerialNumber.String())
	}
	config, err := tlsfiles.ClientConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return config
}

func TestReloadServesTheNewCertificateToNewHandshakesOnly(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	first := ca.Server(t, "first")
	certFile, keyFile := first.WriteFiles(t, dir, "server")
	s, err := tlsfiles.NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.MutualTLS() {
		t.Error("MutualTLS without a client CA")
	}
	addr := echoServer(t, s)
	trust := clientConfig(t, dir, ca, nil)
	if got := servedSerial(t, addr, trust); got != first.Cert.SerialNumber.String() {
		t.Fatalf("served serial %s, want the first certificate's", got)
	}
	open, err := dial(t, addr, trust)
	if err != nil {
		t.Fatal(err)
	}

	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v; want false, nil", changed, err)
	}

	second := ca.Server(t, "second")
	second.WriteFiles(t, dir, "server")
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("Reload after rotation = %v, %v; want true, nil", changed, err)
	}
	if got := servedSerial(t, addr, trust); got != second.Cert.SerialNumber.String() {
		t.Errorf("served serial after rotation %s, want the second certificate's %s", got, second.Cert.SerialNumber)
	}
	if s.Leaf().Subject.CommonName != "second" {
		t.Errorf("Leaf after rotation: %s", s.Leaf().Subject)
	}
	// The connection opened before the rotation goes on as it was.
	if err := echo(open); err != nil {
		t.Errorf("connection opened before the rotation: %v", err)
	}
	if got := open.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Errorf("open connection's certificate changed to %s", got)
	}
}

func TestBadFilesKeepTheCurrentCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	good := ca.Server(t, "good")
	certFile, keyFile := good.WriteFiles(t, dir, "server")
	s, err := tlsfiles.NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := echoServer(t, s)
	trust := clientConfig(t, dir, ca, nil)
	next := ca.Server(t, "next")

	tests := []struct {
		name    string
		write   func()
		wantErr string
	}{
		{"not PEM", func() { tlsfilestest.WriteFile(t, certFile, []byte("not a certificate")) }, "load certificate"},
		{"half-written pair: new certificate, old key", func() {
			tlsfilestest.WriteFile(t, certFile, next.CertPEM)
			tlsfilestest.WriteFile(t, keyFile, good.KeyPEM)
		}, "private key does not match"},
		{"missing key", func() { os.Remove(keyFile) }, "read key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good.WriteFiles(t, dir, "server")
			tt.write()
			changed, err := s.Reload()
			if changed || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Reload = %v, %v; want an error containing %q", changed, err, tt.wantErr)
			}
			if got := servedSerial(t, addr, trust); got != good.Cert.SerialNumber.String() {
				t.Errorf("served serial %s after a failed reload, want the good certificate's", got)
			}
		})
	}

	// Once the pair is whole again, it loads.
	next.WriteFiles(t, dir, "server")
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("Reload of a whole pair = %v, %v", changed, err)
	}
	if got := servedSerial(t, addr, trust); got != next.Cert.SerialNumber.String() {
		t.Errorf("served serial %s, want the next certificate's", got)
	}
}

func TestClientCARotation(t *testing.T) {
	dir := t.TempDir()
	serverCA, oldCA, newCA := tlsfilestest.NewCA(t, "server-ca"), tlsfilestest.NewCA(t, "old-clients"), tlsfilestest.NewCA(t, "new-clients")
	certFile, keyFile := serverCA.Server(t, "saga").WriteFiles(t, dir, "server")
	clientCAFile := filepath.Join(dir, "clients.pem")
	tlsfilestest.WriteFile(t, clientCAFile, oldCA.PEM)
	s, err := tlsfiles.NewServer(certFile, keyFile, clientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !s.MutualTLS() {
		t.Error("MutualTLS is false with a client CA")
	}
	addr := echoServer(t, s)
	oldClient, newClient := oldCA.Client(t, "old"), newCA.Client(t, "new")
	withOld := clientConfig(t, dir, serverCA, &oldClient)
	withNew := clientConfig(t, dir, serverCA, &newClient)
	without := clientConfig(t, dir, serverCA, nil)

	if _, err := dial(t, addr, without); err == nil {
		t.Error("a client without a certificate got in")
	}
	if _, err := dial(t, addr, withNew); err == nil {
		t.Error("a client of a CA not yet trusted got in")
	}
	open, err := dial(t, addr, withOld)
	if err != nil {
		t.Fatalf("a client of the trusted CA: %v", err)
	}

	tlsfilestest.WriteFile(t, clientCAFile, newCA.PEM)
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("Reload after the client CA changed = %v, %v", changed, err)
	}
	if _, err := dial(t, addr, withNew); err != nil {
		t.Errorf("a client of the new CA: %v", err)
	}
	if _, err := dial(t, addr, withOld); err == nil {
		t.Error("a client of the CA taken out still got in")
	}
	if err := echo(open); err != nil {
		t.Errorf("connection opened before the CA rotation: %v", err)
	}

	tlsfilestest.WriteFile(t, clientCAFile, []byte("garbage"))
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("Reload of a bad client CA bundle: %v", err)
	}
	if _, err := dial(t, addr, withNew); err != nil {
		t.Errorf("after a bad client CA bundle, the previous one should hold: %v", err)
	}
}

func TestWatchReloadsChangedFilesAndLogsOnce(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t, "first").WriteFiles(t, dir, "server")
	s, err := tlsfiles.NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	logs := watch(t, s)

	second := ca.Server(t, "second")
	second.WriteFiles(t, dir, "server")
	rec, err := logs.WaitRecord("reloaded the TLS files", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec["serial"] != second.Cert.SerialNumber.String() || rec["subject"] != "CN=second" {
		t.Errorf("reload logged as %v", rec)
	}
	if s.Leaf().SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Error("Watch logged a reload but serves the old certificate")
	}

	// The pair was written in two steps, which a poll may have caught.
	failed := "reloading the TLS files failed; new connections get the previous certificate"
	before := strings.Count(logs.String(), failed)
	tlsfilestest.WriteFile(t, keyFile, []byte("half a key"))
	if err := logs.Wait(5*time.Second, nil, func(text string) bool { return strings.Count(text, failed) > before }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // ten more polls of the same bad files
	if n := strings.Count(logs.String(), failed) - before; n != 1 {
		t.Errorf("a failure that did not change was logged %d times, want once:\n%s", n, logs)
	}
	if s.Leaf().SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Error("a bad key replaced the certificate")
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	caFile := filepath.Join(dir, "ca.pem")
	tlsfilestest.WriteFile(t, caFile, ca.PEM)
	certFile, keyFile := ca.Client(t, "c").WriteFiles(t, dir, "client")
	notPEM := filepath.Join(dir, "not.pem")
	tlsfilestest.WriteFile(t, notPEM, []byte("hello"))

	config, err := tlsfiles.ClientConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if config.MinVersion != tls.VersionTLS12 || config.RootCAs == nil || len(config.Certificates) != 1 {
		t.Errorf("ClientConfig = %+v", config)
	}
	if _, err := config.Certificates[0].Leaf.Verify(x509.VerifyOptions{Roots: config.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not chain to the CA: %v", err)
	}
	if config, err := tlsfiles.ClientConfig("", "", ""); err != nil || config.RootCAs != nil {
		t.Errorf("ClientConfig with nothing = %+v, %v; want the system roots", config, err)
	}

	for _, tt := range []struct {
		name, ca, cert, key, want string
	}{
		{"missing CA", filepath.Join(dir, "nope.pem"), "", "", "read CA bundle"},
		{"CA not PEM", notPEM, "", "", "holds no PEM certificate"},
		{"cert without key", "", certFile, "", "needs its key"},
		{"key without cert", "", "", keyFile, "needs its certificate"},
		{"bad pair", "", notPEM, keyFile, "load client certificate"},
	} {
		if _, err := tlsfiles.ClientConfig(tt.ca, tt.cert, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// Files replaced between reading them and starting Watch are still a
// change to Watch: it starts from the files as they were read.
func TestWatchTakesAChangeMadeBeforeItStarted(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t, "first").WriteFiles(t, dir, "server")
	s, err := tlsfiles.NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	second := ca.Server(t, "second")
	second.WriteFiles(t, dir, "server")

	logs := watch(t, s)
	if _, err := logs.WaitRecord("reloaded the TLS files", 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if s.Leaf().SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Error("Watch serves the certificate replaced before it started")
	}
}

// watch runs s.Watch every 10 ms until the test ends and returns its log.
func watch(t *testing.T, s *tlsfiles.Server) *asynctest.LogBuffer {
	t.Helper()
	logs := &asynctest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 10*time.Millisecond, slog.New(slog.NewJSONHandler(logs, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return logs
}
