package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/tlsfiles"
)

// A lean, gzipped lookup through the real binary with auth and TLS on: by
// hand, through the Go client (whose transport asks for gzip and unpacks
// it), and through saga lookup.
func TestLeanGzippedLookupWithAuthOverTLS(t *testing.T) {
	s := newTLSSetup(t)
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_AUTH_ENABLED=true",
		"SAGA_SERVER_TLS_CERT_FILE="+s.certFile, "SAGA_SERVER_TLS_KEY_FILE="+s.keyFile)
	p := startSaga(t, env, "serve", "--port", "0")
	cliEnv := sagaEnv(t, "SAGA_ADDR=https://"+p.addr, "SAGA_CACERT="+s.caFile)
	out, errOut, code := runSaga(t, cliEnv, "token", "bootstrap", "-o", "json")
	if code != 0 {
		t.Fatalf("token bootstrap over https: exit %d: %s", code, errOut)
	}
	var bootstrap struct{ Secret string }
	if err := json.Unmarshal([]byte(out), &bootstrap); err != nil || bootstrap.Secret == "" {
		t.Fatalf("token bootstrap printed %q: %v", out, err)
	}
	admin := bootstrap.Secret

	tlsConfig, err := tlsfiles.ClientConfig(s.caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.New("https://"+p.addr, client.WithTLS(tlsConfig), client.WithToken(admin))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := api.Register(t.Context(), "web", registry.Registration{
			ID: fmt.Sprintf("web-%02d", i), Address: fmt.Sprintf("10.0.0.%d", i), Port: 8080,
			Tags: []string{"v1", "http"}, Metadata: map[string]string{"zone": "eu-1"},
		}); err != nil {
			t.Fatalf("register over https: %v", err)
		}
	}

	// By hand: the gzipped lean answer unpacks to the identity one.
	hc := s.httpsClient(false)
	hc.Transport.(*http.Transport).TLSClientConfig.ServerName = "localhost"
	get := func(secret, acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+p.addr+"/api/v1/services/web?fields=id,address,port,tags", nil)
		req.Header.Set("Accept-Encoding", acceptEncoding)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("lean lookup over https: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	if resp, body := get("", "gzip"); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("without a token: %d, Content-Encoding %q: %s", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	plainResp, plain := get(admin, "identity")
	zipped, gz := get(admin, "gzip")
	if plainResp.StatusCode != http.StatusOK || zipped.StatusCode != http.StatusOK || zipped.Header.Get("Content-Encoding") != "gzip" ||
		zipped.Header.Get("Vary") != "Accept-Encoding" || zipped.Header.Get("X-Saga-Index") != plainResp.Header.Get("X-Saga-Index") {
		t.Fatalf("lean lookups: %d %v / %d %v", plainResp.StatusCode, plainResp.Header, zipped.StatusCode, zipped.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	unpacked, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unpacked, plain) || len(gz) >= len(plain) {
		t.Fatalf("gunzipped %d bytes (%v), identity %d, gzipped %d", len(unpacked), err, len(plain), len(gz))
	}
	if !strings.Contains(string(plain), `{"id":"web-00","address":"10.0.0.0","port":8080,"tags":["v1","http"]}`) {
		t.Fatalf("lean answer: %s", plain)
	}

	// The Go client: Fields, gzip taken care of by its transport.
	got, err := api.Lookup(t.Context(), "web", client.LookupOptions{Fields: []string{"id", "address", "port"}})
	if err != nil || len(got.Instances) != 40 || got.Instances[0].Address != "10.0.0.0" || got.Instances[0].Tags != nil {
		t.Fatalf("client lookup: %d instances, %v", len(got.Instances), err)
	}

	// saga lookup: the table, from its lean answer.
	out, errOut, code = runSaga(t, append(cliEnv, "SAGA_TOKEN="+admin), "lookup", "web")
	if code != 0 || strings.Count(out, "\n") != 41 || !strings.Contains(out, "web-39") || !strings.Contains(out, "zone=eu-1") {
		t.Fatalf("saga lookup over https with a token: exit %d, %s\n%s", code, errOut, out)
	}
}
