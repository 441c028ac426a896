package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
)

// TestMain lets the test binary stand in for saga-bench when -ceiling
// re-runs the executable as the ceiling server.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-serve-ceiling" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestEveryScenarioAgainstSagaAndTheCeiling(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-c", "2", "-d", "300ms", "-warmup", "0", "-scenario", "all", "-ceiling", "-rounds", "2"}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	rows := tableRows(t, out.String())
	for _, want := range []string{
		"lookup saga", "lookup ceiling", "heartbeat saga", "heartbeat ceiling",
		"register saga", "register ceiling", "watch saga", "watch (from request) saga",
	} {
		row, ok := rows[want]
		if !ok {
			t.Errorf("no row for %q in:\n%s", want, out.String())
			continue
		}
		if row.ok == 0 || row.failed != 0 {
			t.Errorf("%s: %d ok, %d failed; want some and none:\n%s", want, row.ok, row.failed, out.String())
		}
	}
	if _, ok := rows["watch ceiling"]; ok {
		t.Error("watch has a ceiling row; a bare handler cannot answer blocking queries")
	}
	if !strings.Contains(out.String(), " %") {
		t.Errorf("no share of the ceiling in:\n%s", out.String())
	}

	// The scenarios clean up after themselves (register's instances expire).
	catalog, err := clientFor(t, srv.URL).Services(t.Context(), client.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range catalog.Services {
		if !strings.HasPrefix(s.Name, "bench-register-") && s.Instances > 0 {
			t.Errorf("service %s still has %d instances after the run", s.Name, s.Instances)
		}
	}
}

// With -read-on-change, big's readers read once per change of the big
// service (one registration a second) rather than in a loop.
func TestBigScenarioReadOnChange(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-scenario", "big", "-instances", "2000", "-c", "8", "-readers", "2",
		"-read-on-change", "-d", "2500ms", "-warmup", "0"}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	row, ok := tableRows(t, out.String())["big (big service) saga"]
	if !ok {
		t.Fatalf("no big service row in:\n%s", out.String())
	}
	// Each reader: its first read, then one per registration (about 2 in
	// 2.5 s, 4 at the most with a slow start).
	if row.failed != 0 || row.ok < 2 || row.ok > 2*5 {
		t.Fatalf("big service: %d ok, %d failed; want 2 to 10 reads, none failed:\n%s", row.ok, row.failed, out.String())
	}
}

// With -heartbeat-rate, big's heartbeats keep to the rate asked for
// rather than going as fast as they are answered.
func TestBigScenarioPacesHeartbeats(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-scenario", "big", "-instances", "2000", "-c", "8", "-readers", "1",
		"-heartbeat-rate", "40", "-d", "2500ms", "-warmup", "0"}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	row, ok := tableRows(t, out.String())["big (heartbeat) saga"]
	if !ok {
		t.Fatalf("no heartbeat row in:\n%s", out.String())
	}
	// 40 a second for 2.5 s: 100, and one more for the first.
	if row.failed != 0 || row.ok < 50 || row.ok > 101 {
		t.Fatalf("heartbeats: %d ok, %d failed; want 50 to 101, none failed:\n%s", row.ok, row.failed, out.String())
	}
}

// TestBigScenario runs big at a tiny size: 2,000 instances, still enough
// for the view to treat the answer as a big one.
func TestBigScenario(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-scenario", "big", "-instances", "2000", "-c", "8", "-readers", "2",
		"-d", "1500ms", "-warmup", "0", "-pid", strconv.Itoa(os.Getpid())}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	rows := tableRows(t, out.String())
	for _, want := range []string{"big (small service) saga", "big (big service) saga", "big (heartbeat) saga", "big (register) saga"} {
		row, ok := rows[want]
		if !ok {
			t.Errorf("no row for %q in:\n%s", want, out.String())
			continue
		}
		if row.ok == 0 || row.failed != 0 {
			t.Errorf("%s: %d ok, %d failed; want some and none:\n%s", want, row.ok, row.failed, out.String())
		}
	}
	for _, want := range []string{"registered 2000 instances", "peaks during the measured run", "RSS", "heap in use"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat("/proc/self/status"); err == nil && !strings.Contains(out.String(), "(VmHWM)") {
		t.Errorf("no peak RSS of the process in:\n%s", out.String())
	}

	// Nothing is left behind: not the 2,000, nor those registered during
	// the run, nor the small service's.
	catalog, err := clientFor(t, srv.URL).Services(t.Context(), client.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range catalog.Services {
		if s.Instances > 0 {
			t.Errorf("service %s still has %d instances after the run", s.Name, s.Instances)
		}
	}
}

// TestTokenAndTLS drives Saga through an HTTPS proxy that refuses every
// request without the token: each request must carry it, and the clients
// must trust the proxy's certificate from -cacert.
func TestTokenAndTLS(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	backend, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "saga_bench-test-token"
	var served, refused atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(backend)
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			refused.Add(1)
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		served.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGA_TOKEN", secret) // the token from the environment, the CA from the flag

	var out, errOut bytes.Buffer
	args := []string{"-addr", front.URL, "-cacert", caFile, "-c", "2", "-d", "300ms", "-warmup", "0", "-scenario", "lookup,heartbeat,watch"}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	rows := tableRows(t, out.String())
	for _, want := range []string{"lookup saga", "heartbeat saga", "watch saga"} {
		if row := rows[want]; row.ok == 0 || row.failed != 0 {
			t.Errorf("%s: %d ok, %d failed; want some and none:\n%s", want, row.ok, row.failed, out.String())
		}
	}
	if n := refused.Load(); n != 0 || served.Load() == 0 {
		t.Errorf("the proxy served %d requests and refused %d without the token; want some and none", served.Load(), n)
	}
	if !strings.Contains(out.String(), "https://") {
		t.Errorf("the header does not name the https address:\n%s", out.String())
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "fetch"}, `scenario: "fetch" must be one of lookup, heartbeat, register, watch, big, checks, lean or all`},
		{[]string{"-scenario", "big", "-readers", "0"}, "must be positive"},
		{[]string{"-scenario", "big", "-heartbeat-rate", "-1"}, "-heartbeat-rate not negative"},
		{[]string{"-c", "0"}, "must be positive"},
		{[]string{"-addr", "ftp://x"}, "scheme must be http or https"},
		{[]string{"-addr", "https://127.0.0.1:1", "-cacert", "/nonexistent/ca.pem"}, "read CA bundle"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(t.Context(), tt.args, strings.NewReader(""), &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("saga-bench %v = exit %d, %q; want a failure saying %q", tt.args, code, errOut.String(), tt.want)
		}
	}
}

type tableRow struct{ ok, failed int }

// tableRows reads the final table, keyed by "scenario against".
func tableRows(t *testing.T, out string) map[string]tableRow {
	t.Helper()
	rows := map[string]tableRow{}
	_, table, found := strings.Cut(out, "\nscenario ")
	if !found {
		t.Fatalf("no table in:\n%s", out)
	}
	for _, line := range strings.Split(table, "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) < 9 {
			continue
		}
		// "watch (from request) saga 12 0 …": the name may hold spaces.
		i := 0
		for i < len(fields) && fields[i] != "saga" && fields[i] != "ceiling" {
			i++
		}
		if i+2 >= len(fields) {
			continue
		}
		ok, err1 := strconv.Atoi(fields[i+1])
		failed, err2 := strconv.Atoi(fields[i+2])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad row %q", line)
		}
		rows[strings.Join(fields[:i+1], " ")] = tableRow{ok, failed}
	}
	return rows
}

func clientFor(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
