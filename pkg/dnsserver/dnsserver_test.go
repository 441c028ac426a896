package dnsserver

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/view"
)

// fixture is a DNS server on a free loopback port, answering from a real
// view that the test fills.
type fixture struct {
	t     *testing.T
	view  *view.View
	index uint64
	srv   *Server
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, configure ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, view: view.New(registry.SystemClock{}), reg: prometheus.NewRegistry()}
	opts := Options{Addr: "127.0.0.1:0", Domain: "saga.", TTL: 5, View: f.view, Registerer: f.reg}
	for _, c := range configure {
		c(&opts)
	}
	srv, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	f.srv = srv
	return f
}

// put registers (or updates) an instance in the view.
func (f *fixture) put(service, id, address string, port int, status registry.Status, tags ...string) {
	f.index++
	now := time.Now().UTC()
	f.view.Apply(registry.Event{Type: registry.EventRegistered, Service: service, Index: f.index, Instance: registry.Instance{
		Service: service, ID: id, Address: address, Port: port, Tags: tags, TTLSeconds: 3600, Status: status,
		RegisteredAt: now, LastHeartbeat: now, ExpiresAt: now.Add(time.Hour),
	}})
}

// ask sends one question over net ("udp" or "tcp") and returns the answer.
func (f *fixture) ask(network, name string, qtype uint16) *dns.Msg {
	f.t.Helper()
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(req, f.srv.Addr())
	if err != nil {
		f.t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return resp
}

// values lists the answers' data (addresses, "port target" of SRV), sorted.
func values(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestAnswers(t *testing.T) {
	f := newFixture(t)
	f.put("web", "w1", "10.0.0.1", 8080, registry.StatusPassing, "v1")
	f.put("web", "w2", "10.0.0.2", 8081, registry.StatusPassing, "v2")
	f.put("web", "w6", "fd00::6", 8086, registry.StatusPassing, "v1")
	f.put("web", "byname", "host.example.com", 9000, registry.StatusPassing)
	f.put("web", "warn", "10.0.0.3", 8082, registry.StatusWarning, "v1")
	f.put("web", "down", "10.0.0.4", 8083, registry.StatusCritical, "v1")
	f.put("db", "d1", "10.1.0.1", 5432, registry.StatusCritical)

	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.service.saga.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.2"}},
		{"web.service.saga.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::6"}},
		{"web.service.saga.", dns.TypeSRV, dns.RcodeSuccess, []string{
			"8080 w1.web.instance.saga.", "8081 w2.web.instance.saga.", "8086 w6.web.instance.saga.", "9000 host.example.com.",
		}},
		{"v1.web.service.saga.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"v2.web.service.saga.", dns.TypeSRV, dns.RcodeSuccess, []string{"8081 w2.web.instance.saga."}},
		{"WeB.SERVICE.Saga.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.2"}},
		{"w1.web.instance.saga.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"W6.Web.Instance.saga.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::6"}},
		// Known, nothing passing to answer: no data, not no name.
		{"db.service.saga.", dns.TypeA, dns.RcodeSuccess, []string{}},
		{"v3.web.service.saga.", dns.TypeA, dns.RcodeSuccess, []string{}},
		{"web.service.saga.", dns.TypeTXT, dns.RcodeSuccess, []string{}},
		{"w1.web.instance.saga.", dns.TypeAAAA, dns.RcodeSuccess, []string{}},
		// No such name.
		{"nope.service.saga.", dns.TypeA, dns.RcodeNameError, []string{}},
		{"down.web.instance.saga.", dns.TypeA, dns.RcodeNameError, []string{}},
		{"web.saga.", dns.TypeA, dns.RcodeNameError, []string{}},
		{"service.saga.", dns.TypeA, dns.RcodeNameError, []string{}},
		// Not ours.
		{"example.com.", dns.TypeA, dns.RcodeRefused, []string{}},
		{"web.service.notsaga.", dns.TypeA, dns.RcodeRefused, []string{}},
	} {
		t.Run(tc.name+" "+dns.TypeToString[tc.qtype], func(t *testing.T) {
			f.t = t
			resp := f.ask("udp", tc.name, tc.qtype)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := values(resp.Answer); !slices.Equal(got, tc.want) {
				t.Errorf("answers %v, want %v", got, tc.want)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Name != tc.name || rr.Header().Ttl != 5 {
					t.Errorf("record %s: want the name as asked and TTL 5", rr)
				}
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if want := len(tc.want) == 0 && tc.rcode != dns.RcodeRefused; hasSOA != want {
				t.Errorf("authority %v, want an SOA: %v", resp.Ns, want)
			}
		})
	}

	// SRV targets at IP addresses come with their address.
	f.t = t
	resp := f.ask("udp", "web.service.saga.", dns.TypeSRV)
	want := []string{"10.0.0.1", "10.0.0.2", "fd00::6"}
	if got := values(resp.Extra); !slices.Equal(got, want) {
		t.Errorf("additional %v, want %v", got, want)
	}
	for _, rr := range resp.Extra {
		if !strings.HasSuffix(rr.Header().Name, ".web.instance.saga.") {
			t.Errorf("additional record %s: not an instance name", rr)
		}
	}
}

func TestApex(t *testing.T) {
	f := newFixture(t)
	resp := f.ask("udp", "SAGA.", dns.TypeSOA)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.SOA).Ns != "ns.saga." || !resp.Authoritative {
		t.Errorf("SOA answer %v", resp.Answer)
	}
	resp = f.ask("udp", "saga.", dns.TypeNS)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.NS).Ns != "ns.saga." {
		t.Errorf("NS answer %v", resp.Answer)
	}
	// Bound to 127.0.0.1, the name server's name has that address.
	if got := values(resp.Extra); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("NS glue %v", got)
	}
	if got := values(f.ask("udp", "ns.saga.", dns.TypeA).Answer); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("ns.saga. A = %v", got)
	}
}

func TestTruncatedOverUDPCompleteOverTCP(t *testing.T) {
	f := newFixture(t)
	for i := range 100 {
		f.put("big", fmt.Sprintf("b%03d", i), fmt.Sprintf("10.2.%d.%d", i/256, i%256), 8000+i, registry.StatusPassing)
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		udp := f.ask("udp", "big.service.saga.", qtype)
		if !udp.Truncated || len(udp.Answer) == 0 || len(udp.Answer) >= 100 {
			t.Errorf("%s over UDP: TC %v with %d answers; want TC and some of them", dns.TypeToString[qtype], udp.Truncated, len(udp.Answer))
		}
		udp.Compress = true // as it was sent
		if packed, err := udp.Pack(); err != nil || len(packed) > dns.MinMsgSize {
			t.Errorf("%s over UDP: %d bytes (%v), more than %d", dns.TypeToString[qtype], len(packed), err, dns.MinMsgSize)
		}
		tcp := f.ask("tcp", "big.service.saga.", qtype)
		if tcp.Truncated || len(tcp.Answer) != 100 {
			t.Errorf("%s over TCP: TC %v with %d answers; want all 100", dns.TypeToString[qtype], tcp.Truncated, len(tcp.Answer))
		}
	}
	if n := len(f.ask("tcp", "big.service.saga.", dns.TypeSRV).Extra); n != 100 {
		t.Errorf("SRV over TCP: %d additional records, want 100", n)
	}

	// A client that offers a bigger UDP payload gets more, in that size.
	req := new(dns.Msg)
	req.SetQuestion("big.service.saga.", dns.TypeA)
	req.SetEdns0(4096, false)
	resp, err := dns.Exchange(req, f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Truncated || len(resp.Answer) != 100 || resp.IsEdns0() == nil {
		t.Errorf("EDNS0 4096: TC %v, %d answers, OPT %v; want all 100 and an OPT", resp.Truncated, len(resp.Answer), resp.IsEdns0())
	}
}

func TestOrderIsShuffled(t *testing.T) {
	f := newFixture(t)
	for i := range 10 {
		f.put("web", fmt.Sprintf("w%d", i), fmt.Sprintf("10.0.0.%d", i+1), 80, registry.StatusPassing)
	}
	firsts := map[string]bool{}
	for range 50 {
		resp := f.ask("udp", "web.service.saga.", dns.TypeA)
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	// 50 draws of 10 addresses all landing on 2 or fewer: about 1 in 10^30.
	if len(firsts) < 3 {
		t.Errorf("first answers %v: the order does not change", firsts)
	}
}

func TestInstanceTurnedCriticalDisappears(t *testing.T) {
	f := newFixture(t)
	f.put("web", "w1", "10.0.0.1", 80, registry.StatusPassing)
	f.put("web", "w2", "10.0.0.2", 80, registry.StatusPassing)
	if got := values(f.ask("udp", "web.service.saga.", dns.TypeA).Answer); len(got) != 2 {
		t.Fatalf("answers %v, want 2", got)
	}
	f.index++
	now := time.Now().UTC()
	f.view.Apply(registry.Event{Type: registry.EventUpdated, Service: "web", Index: f.index, Instance: registry.Instance{
		Service: "web", ID: "w2", Address: "10.0.0.2", Port: 80, TTLSeconds: 3600, Status: registry.StatusCritical,
		RegisteredAt: now, LastHeartbeat: now, ExpiresAt: now.Add(time.Hour),
	}})
	if got := values(f.ask("udp", "web.service.saga.", dns.TypeA).Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("answers %v after w2 turned critical, want only 10.0.0.1", got)
	}
	if resp := f.ask("udp", "w2.web.instance.saga.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("w2's own name: %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
}

func TestQueriesAreCounted(t *testing.T) {
	f := newFixture(t)
	f.put("web", "w1", "10.0.0.1", 80, registry.StatusPassing)
	f.ask("udp", "web.service.saga.", dns.TypeA)
	f.ask("tcp", "web.service.saga.", dns.TypeA)
	f.ask("udp", "nope.service.saga.", dns.TypeSRV)
	f.ask("udp", "web.service.saga.", dns.TypeMX)
	got := map[string]float64{}
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "saga_dns_queries_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["type"]+" "+labels["rcode"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"A NOERROR": 2, "SRV NXDOMAIN": 1, "other NOERROR": 1}
	if !maps.Equal(got, want) {
		t.Errorf("saga_dns_queries_total by type and rcode: %v, want %v", got, want)
	}
}

func TestListenFailureNamesTheAddress(t *testing.T) {
	f := newFixture(t)
	_, err := Listen(Options{Addr: f.srv.Addr(), Domain: "saga.", View: f.view})
	if err == nil {
		t.Fatal("a second server bound the same address")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say why", err)
	}
	if _, err := net.ResolveUDPAddr("udp", f.srv.Addr()); err != nil {
		t.Errorf("Addr %q is not an address: %v", f.srv.Addr(), err)
	}
}

// BenchmarkAnswer is the work of one query of a 10-instance service, as
// dnsperf measures it through the server: answer, truncate, pack.
func BenchmarkAnswer(b *testing.B) {
	v := view.New(registry.SystemClock{})
	now := time.Now().UTC()
	for i := range 10 {
		id := fmt.Sprintf("web-%d", i)
		v.Apply(registry.Event{Type: registry.EventRegistered, Service: "web", Index: uint64(i + 1), Instance: registry.Instance{
			Service: "web", ID: id, Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8080, TTLSeconds: 3600,
			Status: registry.StatusPassing, RegisteredAt: now, LastHeartbeat: now, ExpiresAt: now.Add(time.Hour),
		}})
	}
	z := newZone("saga.", 0, v, net.IPv4(127, 0, 0, 1))
	req := new(dns.Msg)
	req.SetQuestion("web.service.saga.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		resp := z.answer(req)
		resp.Truncate(dns.MinMsgSize)
		if _, err := resp.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAllowRefusesClients: a client that Allow turns away (Saga's
// protected mode) gets REFUSED over UDP and TCP, and no data.
func TestAllowRefusesClients(t *testing.T) {
	var mu sync.Mutex
	allowed := false
	var asked []netip.Addr
	f := newFixture(t, func(o *Options) {
		o.Allow = func(client netip.Addr) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, client)
			return allowed
		}
	})
	f.put("web", "a", "10.0.0.1", 80, registry.StatusPassing)
	for _, network := range []string{"udp", "tcp"} {
		resp := f.ask(network, "web.service.saga.", dns.TypeA)
		if resp.Rcode != dns.RcodeRefused || len(resp.Answer) != 0 {
			t.Errorf("%s, not allowed: %s with %d answers, want REFUSED and none", network, dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
	}
	mu.Lock()
	allowed = true
	for _, a := range asked {
		if a != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("Allow was asked about %v, want the client's address 127.0.0.1", a)
		}
	}
	mu.Unlock()
	if resp := f.ask("udp", "web.service.saga.", dns.TypeA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("allowed: %s with %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
}
