package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/tlsfiles/tlsfilestest"
)

// tlsSetup is a directory of test certificates: a server pair signed by
// ca, a client pair signed by clientCA, and ca's certificate in ca.pem.
type tlsSetup struct {
	dir                   string
	ca, clientCA          *tlsfilestest.CA
	server                tlsfilestest.Pair
	certFile, keyFile     string // the server's
	caFile                string
	clientCert, clientKey string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	s := &tlsSetup{dir: t.TempDir(), ca: tlsfilestest.NewCA(t, "saga-ca"), clientCA: tlsfilestest.NewCA(t, "clients-ca")}
	s.server = s.ca.Server(t, "saga-1")
	s.certFile, s.keyFile = s.server.WriteFiles(t, s.dir, "server")
	s.caFile = filepath.Join(s.dir, "ca.pem")
	tlsfilestest.WriteFile(t, s.caFile, s.ca.PEM)
	s.clientCert, s.clientKey = s.clientCA.Client(t, "ops").WriteFiles(t, s.dir, "client")
	return s
}

// httpsClient trusts the setup's CA; every request is a new handshake.
func (s *tlsSetup) httpsClient(withClientCert bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.PEM)
	config := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withClientCert {
		pair, err := tls.LoadX509KeyPair(s.clientCert, s.clientKey)
		if err != nil {
			panic(err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: config, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// servedSubject is the subject of the certificate a new handshake sees.
func servedSubject(c *http.Client, addr string) (string, error) {
	resp, err := c.Get("https://" + addr + "/livez")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
}

func TestTLSClientCommands(t *testing.T) {
	s := newTLSSetup(t)
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_SERVER_TLS_CERT_FILE="+s.certFile, "SAGA_SERVER_TLS_KEY_FILE="+s.keyFile)
	p := startSaga(t, env, "serve", "--port", "0")
	if _, err := p.logs.WaitRecord("TLS is on", time.Second, nil); err != nil {
		t.Errorf("no TLS line at start: %v", err)
	}
	// Go's TLS server answers a plain request with 400 and nothing else.
	if status := e2eDo(t, http.MethodGet, p.url("/livez"), nil, nil); status != http.StatusBadRequest {
		t.Errorf("plain http on the TLS port: status %d, want 400", status)
	}

	client := sagaEnv(t, "SAGA_ADDR=https://"+p.addr, "SAGA_CACERT="+s.caFile)
	for _, args := range [][]string{
		{"register", "web", "--id", "web-1", "--address", "10.0.0.5", "--port", "8080"},
		{"lookup", "web"},
		{"health"},
		{"health", "--quiet"},
	} {
		out, errOut, code := runSaga(t, client, args...)
		if code != 0 {
			t.Errorf("saga %s over https: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		if args[0] == "lookup" && !strings.Contains(out, "web-1") {
			t.Errorf("saga lookup web over https printed %q", out)
		}
	}

	wrongCA := filepath.Join(t.TempDir(), "other.pem")
	tlsfilestest.WriteFile(t, wrongCA, tlsfilestest.NewCA(t, "other").PEM)
	_, errOut, code := runSaga(t, sagaEnv(t, "SAGA_ADDR=https://"+p.addr, "SAGA_CACERT="+wrongCA), "lookup", "web")
	if code != 1 || !strings.Contains(errOut, "certificate signed by unknown authority") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("lookup trusting the wrong CA: exit %d, stderr %q; want 1 and one line about the certificate", code, errOut)
	}

	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"SAGA_CACERT=/nonexistent/ca.pem"}, []string{"lookup", "web"}, "saga: lookup: read CA bundle: open /nonexistent/ca.pem: no such file or directory\n"},
		{nil, []string{"lookup", "web", "--token-file", "/nonexistent/token"}, "saga: lookup: --token-file: read the token: open /nonexistent/token: no such file or directory\n"},
		{[]string{"SAGA_TOKEN_FILE=/nonexistent/token"}, []string{"health", "--quiet"}, "saga: health: SAGA_TOKEN_FILE: read the token: open /nonexistent/token: no such file or directory\n"},
		{[]string{"SAGA_CLIENT_CERT=" + s.clientCert}, []string{"services"}, "saga: services: SAGA_CLIENT_CERT needs a key: set --client-key or SAGA_CLIENT_KEY\n"},
	} {
		_, errOut, code := runSaga(t, sagaEnv(t, append(tt.env, "SAGA_ADDR=https://"+p.addr)...), tt.args...)
		if code != 1 || errOut != tt.want {
			t.Errorf("saga %s with %v: exit %d, stderr %q; want 1 and %q", strings.Join(tt.args, " "), tt.env, code, errOut, tt.want)
		}
	}
}

// TestHealthFindsTheLocalTLSServer is the image's HEALTHCHECK with TLS on:
// `saga health --quiet` in the server's environment, without SAGA_ADDR,
// asks https and trusts the server's own certificate, here one for a name
// that is not the loopback address it asks on.
func TestHealthFindsTheLocalTLSServer(t *testing.T) {
	s := newTLSSetup(t)
	certFile, keyFile := s.ca.ServerFor(t, "saga.internal").WriteFiles(t, s.dir, "named")
	port := asynctest.FreePort(t)
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_SERVER_HOST=0.0.0.0", "SAGA_SERVER_PORT="+strconv.Itoa(port),
		"SAGA_SERVER_TLS_CERT_FILE="+certFile, "SAGA_SERVER_TLS_KEY_FILE="+keyFile)
	startSaga(t, env, "serve")
	if _, errOut, code := runSaga(t, env, "health", "--quiet"); code != 0 {
		t.Fatalf("saga health --quiet in the server's environment: exit %d: %s", code, errOut)
	}
	out, errOut, code := runSaga(t, env, "health", "-o", "json")
	if code != 0 || !strings.Contains(out, `"healthy"`) {
		t.Errorf("saga health: exit %d: %s%s", code, out, errOut)
	}
	// A CA given explicitly wins over the local certificate.
	wrongCA := filepath.Join(t.TempDir(), "other.pem")
	tlsfilestest.WriteFile(t, wrongCA, tlsfilestest.NewCA(t, "other").PEM)
	if _, _, code := runSaga(t, append(env, "SAGA_CACERT="+wrongCA), "health", "--quiet"); code != 1 {
		t.Errorf("saga health trusting another CA: exit %d, want 1", code)
	}
}

func TestMutualTLS(t *testing.T) {
	s := newTLSSetup(t)
	clientCAFile := filepath.Join(s.dir, "clients.pem")
	tlsfilestest.WriteFile(t, clientCAFile, s.clientCA.PEM)
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_SERVER_TLS_CERT_FILE="+s.certFile,
		"SAGA_SERVER_TLS_KEY_FILE="+s.keyFile, "SAGA_SERVER_TLS_CLIENT_CA_FILE="+clientCAFile)
	p := startSaga(t, env, "serve", "--port", "0")

	base := []string{"SAGA_ADDR=https://" + p.addr, "SAGA_CACERT=" + s.caFile}
	if _, errOut, code := runSaga(t, sagaEnv(t, base...), "services"); code != 1 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("services without a client certificate: exit %d, stderr %q; want 1 and one line", code, errOut)
	}
	if _, _, code := runSaga(t, sagaEnv(t, base...), "health", "--quiet"); code != 1 {
		t.Errorf("health --quiet without a client certificate: exit %d, want 1", code)
	}
	withCert := sagaEnv(t, append(base, "SAGA_CLIENT_CERT="+s.clientCert, "SAGA_CLIENT_KEY="+s.clientKey)...)
	for _, args := range [][]string{{"services"}, {"health", "--quiet"}} {
		if _, errOut, code := runSaga(t, withCert, args...); code != 0 {
			t.Errorf("saga %s with a client certificate: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
	}
	if _, _, code := runSaga(t, sagaEnv(t, base...), "services", "--client-cert", s.clientCert, "--client-key", s.clientKey); code != 0 {
		t.Errorf("services with --client-cert and --client-key: exit %d", code)
	}
}

// TestTLSRotationKeepsOpenConnections rotates the certificate twice, once
// found by the file watcher and once by SIGHUP, while a blocking query
// opened before the first rotation waits on its connection.
func TestTLSRotationKeepsOpenConnections(t *testing.T) {
	s := newTLSSetup(t)
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_SERVER_TLS_CERT_FILE="+s.certFile, "SAGA_SERVER_TLS_KEY_FILE="+s.keyFile)
	p := startSaga(t, env, "serve", "--port", "0")
	fresh := s.httpsClient(false)

	var first e2eLookup
	if status, _, body, err := sendJSON(t.Context(), fresh, 10*time.Second, http.MethodGet, "https://"+p.addr+"/api/v1/services/x", nil); err != nil || status != http.StatusOK {
		t.Fatalf("lookup: %d %v", status, err)
	} else if err := json.Unmarshal(body, &first); err != nil {
		t.Fatal(err)
	}

	// The blocking query, on a connection of its own.
	type answer struct {
		status  int
		subject string
		body    string
		err     error
	}
	answered := make(chan answer, 1)
	sent := make(chan struct{})
	go func() {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s/api/v1/services/x?index=%d&wait=30s", p.addr, first.Index), nil)
		resp, err := s.httpsClient(false).Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, resp.TLS.PeerCertificates[0].Subject.CommonName, string(body), err}
	}()
	<-sent

	// Rotation 1: new files renamed into place; the watcher finds them.
	s.ca.Server(t, "saga-2").WriteFiles(t, s.dir, "server")
	took := asynctest.Eventually(t, 5*time.Second, "new handshakes see saga-2", func() error {
		subject, err := servedSubject(fresh, p.addr)
		if err == nil && subject != "saga-2" {
			err = fmt.Errorf("served %s", subject)
		}
		return err
	})
	t.Logf("the watcher served the new certificate after %s", took)

	// Rotation 2, by SIGHUP: the files are rewritten in place with their old
	// size and modification time, which the watcher's stat cannot tell from
	// the previous ones, so only the signal can make Saga read them.
	third := samePEMSize(t, s.ca, "saga-3", s.certFile, s.keyFile)
	rewriteInPlace(t, s.certFile, third.CertPEM)
	rewriteInPlace(t, s.keyFile, third.KeyPEM)
	time.Sleep(1500 * time.Millisecond) // a watcher poll or more
	if subject, err := servedSubject(fresh, p.addr); err != nil || subject != "saga-2" {
		t.Fatalf("before SIGHUP: served %s, %v; the watcher should not have seen the in-place rewrite", subject, err)
	}
	p.signal(syscall.SIGHUP)
	asynctest.Eventually(t, 5*time.Second, "new handshakes see saga-3 after SIGHUP", func() error {
		subject, err := servedSubject(fresh, p.addr)
		if err == nil && subject != "saga-3" {
			err = fmt.Errorf("served %s", subject)
		}
		return err
	})

	// The blocking query is still waiting on its first connection, and
	// answers the change.
	select {
	case a := <-answered:
		t.Fatalf("the blocking query ended before any change: %+v", a)
	default:
	}
	reg := map[string]any{"id": "x-1", "address": "10.0.0.1", "port": 8080, "ttl_seconds": 60}
	if status, _, body, err := sendJSON(t.Context(), fresh, 10*time.Second, http.MethodPost, "https://"+p.addr+"/api/v1/services/x/instances", reg); err != nil || status != http.StatusCreated {
		t.Fatalf("register: %d %s %v", status, body, err)
	}
	select {
	case a := <-answered:
		if a.err != nil || a.status != http.StatusOK || !strings.Contains(a.body, `"x-1"`) {
			t.Fatalf("blocking query answered %+v", a)
		}
		if a.subject != "saga-1" {
			t.Errorf("the blocking query's connection saw %s; it was opened under saga-1", a.subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not answer the change")
	}
}

// samePEMSize issues server certificates until one has PEM files of the
// same sizes as those at certFile and keyFile.
func samePEMSize(t *testing.T, ca *tlsfilestest.CA, cn, certFile, keyFile string) tlsfilestest.Pair {
	t.Helper()
	cert, _ := os.Stat(certFile)
	key, _ := os.Stat(keyFile)
	for range 200 {
		p := ca.Server(t, cn)
		if int64(len(p.CertPEM)) == cert.Size() && int64(len(p.KeyPEM)) == key.Size() {
			return p
		}
	}
	t.Fatal("no certificate of the same size in 200 tries")
	return tlsfilestest.Pair{}
}

// rewriteInPlace writes data over path's contents and puts its
// modification time back.
func rewriteInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func TestClientTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("saga_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   connFlags
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "none"},
		{name: "--token", flags: connFlags{token: "saga_flag"}, env: map[string]string{"SAGA_TOKEN": "saga_env"}, want: "saga_flag"},
		{name: "--token-file over the environment", flags: connFlags{tokenFile: file}, env: map[string]string{"SAGA_TOKEN": "saga_env"}, want: "saga_fromfile"},
		{name: "SAGA_TOKEN", env: map[string]string{"SAGA_TOKEN": "saga_env", "SAGA_TOKEN_FILE": file}, want: "saga_env"},
		{name: "SAGA_TOKEN_FILE, trailing newline trimmed", env: map[string]string{"SAGA_TOKEN_FILE": file}, want: "saga_fromfile"},
		{name: "both flags", flags: connFlags{token: "saga_flag", tokenFile: file}, wantErr: "--token and --token-file: give one of them, not both"},
		{name: "empty file", env: map[string]string{"SAGA_TOKEN_FILE": empty}, wantErr: "SAGA_TOKEN_FILE: " + empty + " holds no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.flags.readToken(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("readToken error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("readToken = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestClientSendsTheTokenAndExplainsAMissingOne(t *testing.T) {
	var seen []string
	srv := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"unauthenticated","message":"this request needs a token: send Authorization: Bearer saga_…"}}`)
			return
		}
		fmt.Fprint(w, `{"index":1,"services":[]}`)
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("saga_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := addrEnv(t, "", nil)
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"services", "--server", srv, "--token-file", tokenFile}, getenv, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("services with --token-file: exit %d: %s", code, errOut.String())
	}
	if len(seen) != 1 || seen[0] != "Bearer saga_secret" {
		t.Errorf("Authorization sent: %q", seen)
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"services", "--server", srv}, getenv, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Fatalf("services without a token: exit %d", code)
	}
	want := "saga: services: this request needs a token: send Authorization: Bearer saga_… (unauthenticated); give a token with --token-file, --token, SAGA_TOKEN_FILE or SAGA_TOKEN\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

func httptestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLocalServerWithTLSIsAskedOverHTTPS(t *testing.T) {
	s := newTLSSetup(t)
	file := fmt.Sprintf("[server]\nport = 9100\n[server.tls]\ncert_file = %q\nkey_file = %q\n", s.certFile, s.keyFile)
	a := &app{getenv: addrEnv(t, file, nil)}
	addr, serverCert, note := a.serverAddr("")
	if addr != "https://127.0.0.1:9100" || serverCert != s.certFile || note != nil {
		t.Errorf("serverAddr = %q, %q, %v; want https and the certificate file", addr, serverCert, note)
	}
	flags := clientFlags{output: "table"}
	config, err := flags.conn.tlsConfig(a.getenv, addr, serverCert)
	if err != nil || config == nil || config.RootCAs == nil || config.ServerName != "" {
		t.Fatalf("tlsConfig = %+v, %v; want the server's certificate trusted under the address's own name", config, err)
	}

	// A certificate that does not name the loopback address is checked
	// under a name it carries.
	named, _ := s.ca.ServerFor(t, "saga.internal").WriteFiles(t, s.dir, "named")
	if config, err = flags.conn.tlsConfig(a.getenv, addr, named); err != nil || config.ServerName != "saga.internal" {
		t.Errorf("tlsConfig for a named certificate: ServerName %q, %v", config.ServerName, err)
	}
	// An unreadable local certificate leaves the system's CAs.
	if config, err = flags.conn.tlsConfig(a.getenv, addr, filepath.Join(s.dir, "missing.pem")); err != nil || config != nil {
		t.Errorf("tlsConfig without a readable certificate = %+v, %v; want Go's defaults", config, err)
	}
}
