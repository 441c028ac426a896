package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

// TestDNS proves the DNS interface (SPEC §8) with the clients users have:
// Debian's dig and Go's own resolver, against the real binary.
func TestDNS(t *testing.T) {
	digPath, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed (Debian package bind9-dnsutils): run `make test-deps`")
	}
	p := startSaga(t, sagaEnv(t,
		"SAGA_DNS_PORT="+strconv.Itoa(asynctest.FreePort(t)),
		"SAGA_DATA_DIR="+t.TempDir(),
		"SAGA_LIMITS_WRITE_RATE=0", // the 100 registrations below come from one client
	), "serve", "--port", "0")
	rec, ok := p.logs.Record("dns serving")
	if !ok {
		t.Fatalf("no dns serving log line")
	}
	dnsAddr, _ := rec["addr"].(string)
	host, port, err := net.SplitHostPort(dnsAddr)
	if err != nil {
		t.Fatalf("dns serving addr %q: %v", dnsAddr, err)
	}

	// dig runs dig against the server and returns its output.
	dig := func(args ...string) string {
		t.Helper()
		args = append([]string{"@" + host, "-p", port, "+tries=1", "+time=5"}, args...)
		out, err := exec.Command(digPath, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	short := func(args ...string) []string {
		t.Helper()
		out := []string{}
		for line := range strings.Lines(dig(append([]string{"+short"}, args...)...)) {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
		slices.Sort(out)
		return out
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr) // UDP, or TCP after a truncated answer
	}}

	register := func(service, id, address string, port int, tags ...string) {
		t.Helper()
		body := map[string]any{"id": id, "address": address, "port": port, "tags": tags, "ttl_seconds": 600}
		if status := e2eDo(t, http.MethodPost, p.url("/api/v1/services/"+service+"/instances"), body, nil); status != http.StatusCreated {
			t.Fatalf("register %s/%s: status %d", service, id, status)
		}
	}
	register("web", "w1", "10.0.0.1", 8081, "v1")
	register("web", "w2", "10.0.0.2", 8082, "v2")
	register("web", "w3", "10.0.0.3", 8083, "v1")

	t.Run("A", func(t *testing.T) {
		want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
		if got := short("web.service.saga.", "A"); !slices.Equal(got, want) {
			t.Errorf("dig A: %v, want %v", got, want)
		}
		got, err := resolver.LookupHost(t.Context(), "web.service.saga.")
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Go LookupHost: %v %v, want %v", got, err, want)
		}
	})
	t.Run("SRV", func(t *testing.T) {
		want := []string{
			"1 1 8081 w1.web.instance.saga.", "1 1 8082 w2.web.instance.saga.", "1 1 8083 w3.web.instance.saga.",
		}
		if got := short("web.service.saga.", "SRV"); !slices.Equal(got, want) {
			t.Errorf("dig SRV: %v, want %v", got, want)
		}
		// The targets' addresses come in the additional section.
		if out := dig("+noall", "+additional", "web.service.saga.", "SRV"); !strings.Contains(out, "w2.web.instance.saga.\t0\tIN\tA\t10.0.0.2") {
			t.Errorf("dig SRV: no address of w2 in the additional section:\n%s", out)
		}
		_, srvs, err := resolver.LookupSRV(t.Context(), "", "", "web.service.saga.")
		if err != nil || len(srvs) != 3 {
			t.Fatalf("Go LookupSRV: %v %v, want 3", srvs, err)
		}
		for _, srv := range srvs {
			addrs, err := resolver.LookupHost(t.Context(), srv.Target)
			want := "10.0.0." + strconv.Itoa(int(srv.Port)-8080)
			if err != nil || !slices.Equal(addrs, []string{want}) {
				t.Errorf("Go LookupHost(%s): %v %v, want %s", srv.Target, addrs, err, want)
			}
		}
	})
	t.Run("tag", func(t *testing.T) {
		if got, want := short("v1.web.service.saga."), []string{"10.0.0.1", "10.0.0.3"}; !slices.Equal(got, want) {
			t.Errorf("dig v1 A: %v, want %v", got, want)
		}
		got, err := resolver.LookupHost(t.Context(), "v2.web.service.saga.")
		if err != nil || !slices.Equal(got, []string{"10.0.0.2"}) {
			t.Errorf("Go LookupHost v2: %v %v", got, err)
		}
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		if out := dig("nope.service.saga."); !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA") {
			t.Errorf("dig nope: want NXDOMAIN with an SOA:\n%s", out)
		}
		_, err := resolver.LookupHost(t.Context(), "nope.service.saga.")
		if dnsErr, ok := errors.AsType[*net.DNSError](err); !ok || !dnsErr.IsNotFound {
			t.Errorf("Go LookupHost nope: %v, want not found", err)
		}
	})

	t.Run("truncation", func(t *testing.T) {
		for i := range 100 {
			register("big", fmt.Sprintf("b%03d", i), fmt.Sprintf("10.2.%d.%d", i/256, i%256), 9000+i)
		}
		// Over UDP alone, the answer does not fit: TC and what fits.
		out := dig("+notcp", "+ignore", "big.service.saga.")
		if !digFlag(out, "tc") {
			t.Errorf("dig +notcp +ignore: no tc flag:\n%s", out)
		}
		// dig sees TC and asks again over TCP, which carries all 100.
		out = dig("big.service.saga.")
		if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 100,") {
			t.Errorf("dig: want a retry over TCP with 100 answers:\n%s", out)
		}
		if got := short("+tcp", "big.service.saga.", "SRV"); len(got) != 100 {
			t.Errorf("dig +tcp SRV: %d answers, want 100", len(got))
		}
		// Go's resolver does the same.
		addrs, err := resolver.LookupHost(t.Context(), "big.service.saga.")
		if err != nil || len(addrs) != 100 {
			t.Errorf("Go LookupHost big: %d addresses (%v), want 100", len(addrs), err)
		}
	})

	t.Run("critical instance disappears", func(t *testing.T) {
		body := map[string]any{"status": "critical"}
		if status := e2eDo(t, http.MethodPut, p.url("/api/v1/services/web/instances/w2/heartbeat"), body, nil); status != http.StatusOK {
			t.Fatalf("heartbeat critical: status %d", status)
		}
		want := []string{"10.0.0.1", "10.0.0.3"}
		asynctest.Eventually(t, 5*time.Second, "w2 gone from the answers", func() error {
			if got := short("web.service.saga."); !slices.Equal(got, want) {
				return fmt.Errorf("dig A: %v, want %v", got, want)
			}
			return nil
		})
		got, err := resolver.LookupHost(t.Context(), "web.service.saga.")
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Go LookupHost: %v %v, want %v", got, err, want)
		}
		if got := short("web.service.saga.", "SRV"); len(got) != 2 {
			t.Errorf("dig SRV: %v, want 2 records", got)
		}
	})
}

// digFlag reports whether dig's ";; flags:" line holds flag.
func digFlag(out, flag string) bool {
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, ";; flags: "); ok {
			flags, _, _ := strings.Cut(rest, ";")
			return slices.Contains(strings.Fields(flags), flag)
		}
	}
	return false
}

// TestDNSPortTakenStopsStartUp: a DNS port that cannot be bound is a
// start-up failure that names the setting.
func TestDNSPortTakenStopsStartUp(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.LocalAddr().(*net.UDPAddr).Port)
	_, stderr, code := runSaga(t, sagaEnv(t, "SAGA_DNS_PORT="+port, "SAGA_DATA_DIR="+t.TempDir()), "serve", "--port", "0")
	if code == 0 || !strings.Contains(stderr, "dns.port") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, stderr:\n%s\nwant a failure naming dns.port and why", code, stderr)
	}
}
