package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/tlsfiles"
	"github.com/sagaproject/saga/pkg/tlsfiles/tlsfilestest"
)

func TestTLSServesHTTPSAndReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca := tlsfilestest.NewCA(t, "ca")
	clientCA := tlsfilestest.NewCA(t, "clients")
	cfg := testConfig(t)
	cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile = ca.Server(t, "first").WriteFiles(t, dir, "server")
	cfg.Server.TLS.ClientCAFile = filepath.Join(dir, "clients.pem")
	tlsfilestest.WriteFile(t, cfg.Server.TLS.ClientCAFile, clientCA.PEM)
	caFile := filepath.Join(dir, "ca.pem")
	tlsfilestest.WriteFile(t, caFile, ca.PEM)
	certFile, keyFile := clientCA.Client(t, "me").WriteFiles(t, dir, "client")

	logs := &asynctest.LogBuffer{}
	d := New(Options{
		Config: cfg,
		Reload: func() (*config.Config, error) { c := *cfg; return &c, nil },
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	rec, err := logs.WaitRecord("serving", 10*time.Second, nil)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, logs)
	}
	addr := rec["addr"].(string)
	if rec, ok := logs.Record("TLS is on"); !ok || rec["client_certificates_required"] != true || rec["subject"] != "CN=first" {
		t.Errorf("TLS start logged as %v", rec)
	}

	get := func(caFile, certFile, keyFile string) (*http.Response, error) {
		config, err := tlsfiles.ClientConfig(caFile, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// A transport per request: every request is a new handshake.
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: config}, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get(caFile, certFile, keyFile)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz over mTLS: %v", err)
	}
	if subject := resp.TLS.PeerCertificates[0].Subject.CommonName; subject != "first" {
		t.Errorf("served %s, want first", subject)
	}
	if _, err := get(caFile, "", ""); err == nil {
		t.Error("a client without a certificate was served")
	}

	ca.Server(t, "second").WriteFiles(t, dir, "server")
	d.Reload() // the watcher may be first; either way the next handshake sees the new certificate
	reloaded := func(text string) bool {
		return strings.Contains(text, `"msg":"reloaded the TLS files"`) || strings.Contains(text, `"reread":["server.tls files"`)
	}
	if err := logs.Wait(5*time.Second, nil, reloaded); err != nil {
		t.Fatalf("no reload logged:\n%s", logs)
	}
	resp, err = get(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if subject := resp.TLS.PeerCertificates[0].Subject.CommonName; subject != "second" {
		t.Errorf("served %s after the reload, want second", subject)
	}
}
