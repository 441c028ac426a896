// Package dnsserver answers DNS queries for the registry's services (SPEC
// §8) over UDP and TCP, from the in-memory view, with no store round trip:
//
//	<service>.service.<domain>        A, AAAA, SRV of the passing instances
//	<tag>.<service>.service.<domain>  the same, of those that carry tag
//	<id>.<service>.instance.<domain>  A or AAAA of one passing instance
//	<domain>                          SOA and NS
//
// docs/integrations.md is the user's guide.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaproject/saga/pkg/view"
)

// Endpoints is what the server reads of the registry (*view.View).
type Endpoints interface {
	Passing(service, tag string) (eps []view.Endpoint, known bool)
}

// Options is what a server is built from. Addr, Domain and View are
// required.
type Options struct {
	Addr   string // host:port to listen on, UDP and TCP alike; port 0: any free one
	Domain string // the zone served, such as "saga."
	TTL    uint32 // seconds, of every record
	View   Endpoints
	Logger *slog.Logger // nil: discard
	// Registerer receives the query counter; nil: no metrics.
	Registerer prometheus.Registerer
	// Allow decides, per query, whether a client may be answered (Saga's
	// protected mode); nil: everyone. A refused query gets REFUSED.
	Allow func(client netip.Addr) bool
}

// Server is a DNS server bound to one address over UDP and TCP.
type Server struct {
	zone    zone
	logger  *slog.Logger
	queries *prometheus.CounterVec
	allow   func(netip.Addr) bool

	udp, tcp *dns.Server
	addr     string
	served   sync.WaitGroup
}

// Listen binds the UDP and TCP sockets of opts.Addr; Start serves them.
func Listen(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pc, ln, err := listen(opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		zone:   newZone(opts.Domain, opts.TTL, opts.View, ln.Addr().(*net.TCPAddr).IP),
		logger: opts.Logger.With("component", "dns"),
		addr:   ln.Addr().String(),
		allow:  opts.Allow,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_dns_queries_total", Help: "DNS queries by question type and response code.",
		}, []string{"type", "rcode"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.queries)
	}
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	return s, nil
}

// listen binds TCP and UDP on one port. With port 0 the port TCP got may
// be taken for UDP; a few tries find one free for both.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	tries := 1
	if port == "0" {
		tries = 10
	}
	for {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, unwrapOp(err)
		}
		bound := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, bound))
		if err == nil {
			return pc, ln, nil
		}
		_ = ln.Close() // the UDP error is the one worth reporting
		if tries--; tries == 0 {
			return nil, nil, unwrapOp(err)
		}
	}
}

// unwrapOp drops net's "listen tcp 127.0.0.1:53:" prefix: callers name
// the address themselves.
func unwrapOp(err error) error {
	if opErr, ok := errors.AsType[*net.OpError](err); ok {
		return fmt.Errorf("%s: %w", opErr.Net, opErr.Err)
	}
	return err
}

// Addr is the address the server is bound to, UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Start serves UDP and TCP until Shutdown. It returns once both serve.
func (s *Server) Start() {
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		s.served.Go(func() {
			defer close(done)
			if err := srv.ActivateAndServe(); err != nil {
				s.logger.Error("dns server stopped", "err", err)
			}
		})
		select { // so that Shutdown finds it started
		case <-started:
		case <-done:
		}
	}
}

// Shutdown stops serving and waits, until ctx ends, for the TCP
// connections and the queries in flight. Answering takes microseconds, so
// there is nothing to drain but those.
func (s *Server) Shutdown(ctx context.Context) error {
	err := errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	s.served.Wait()
	return err
}

// ServeDNS answers one query, truncated to what the transport carries.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if s.allow != nil && !s.allow(clientAddr(w.RemoteAddr())) {
		resp := new(dns.Msg).SetRcode(req, dns.RcodeRefused)
		s.queries.WithLabelValues(typeLabel(req), dns.RcodeToString[resp.Rcode]).Inc()
		_ = w.WriteMsg(resp)
		return
	}
	resp := s.zone.answer(req)
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	size := dns.MinMsgSize
	if overTCP {
		size = dns.MaxMsgSize
	}
	if opt := req.IsEdns0(); opt != nil {
		if !overTCP {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.SetEdns0(udpSize, false)
	}
	// Over UDP this sets TC when answers had to be left out, so that the
	// client asks again over TCP.
	resp.Truncate(size)
	s.queries.WithLabelValues(typeLabel(req), dns.RcodeToString[resp.Rcode]).Inc()
	_ = w.WriteMsg(resp) // a client that went away needs no answer
}

// clientAddr is the IP address of a UDP or TCP peer.
func clientAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// udpSize is the payload the server advertises over EDNS0: the size that
// avoids IP fragmentation on common paths (DNS Flag Day 2020).
const udpSize = 1232

// typeLabel names the question type for the metric: a fixed few, so that
// clients cannot grow the label set.
func typeLabel(req *dns.Msg) string {
	if len(req.Question) == 1 {
		switch t := req.Question[0].Qtype; t {
		case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeSOA, dns.TypeNS, dns.TypeANY:
			return dns.TypeToString[t]
		}
	}
	return "other"
}
