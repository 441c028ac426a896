package dnsserver

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sagaproject/saga/pkg/view"
)

// maxAnswers bounds the records built for one name: a 64 KiB message
// holds fewer A records than that, and building the records of every
// instance of a service of 200,000 only to truncate them would cost each
// query dearly.
const maxAnswers = 4096

// zone answers the queries of one domain.
type zone struct {
	domain string // canonical: lower case, ending in a dot
	ttl    uint32
	view   Endpoints
	nsIP   net.IP // of ns.<domain>; nil when bound to every address
}

func newZone(domain string, ttl uint32, v Endpoints, bound net.IP) zone {
	z := zone{domain: dns.CanonicalName(domain), ttl: ttl, view: v}
	if !bound.IsUnspecified() {
		z.nsIP = bound
	}
	return z
}

// answer builds the response to req, before truncation.
func (z zone) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0] // the server accepts only queries of one question
	lower := strings.ToLower(q.Name)
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		return resp
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY,
		lower != z.domain && !strings.HasSuffix(lower, "."+z.domain):
		// Not ours: a server that only knows its own zone refuses.
		resp.Authoritative = false
		resp.Rcode = dns.RcodeRefused
		return resp
	}

	// Names are matched whatever their case; the view finds a service
	// spelt otherwise, and the answers keep the name as asked.
	rel := strings.TrimSuffix(q.Name[:len(q.Name)-len(z.domain)], ".")
	var labels []string
	if rel != "" {
		labels = strings.Split(rel, ".")
	}
	n := len(labels)
	kind := ""
	if n > 0 {
		kind = strings.ToLower(labels[n-1])
	}
	found := true
	switch {
	case n == 0:
		z.apex(resp, q)
	case n == 1 && kind == "ns":
		if z.nsIP != nil {
			resp.Answer = addressRecords(q.Name, q.Qtype, z.nsIP, z.ttl)
		}
	case n >= 2 && kind == "service":
		found = z.service(resp, q, labels[n-2], strings.Join(labels[:n-2], "."))
	case n >= 3 && kind == "instance":
		found = z.instance(resp, q, labels[n-2], strings.Join(labels[:n-2], "."))
	default:
		found = false
	}
	if !found {
		resp.Rcode = dns.RcodeNameError
	}
	if len(resp.Answer) == 0 {
		// NXDOMAIN or no data: the SOA tells caches how long to remember
		// that (RFC 2308).
		resp.Ns = []dns.RR{z.soa()}
	}
	return resp
}

// apex answers the domain itself: SOA and NS.
func (z zone) apex(resp *dns.Msg, q dns.Question) {
	if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
		resp.Answer = append(resp.Answer, z.soa())
	}
	if q.Qtype == dns.TypeNS || q.Qtype == dns.TypeANY {
		resp.Answer = append(resp.Answer, &dns.NS{Hdr: z.header(z.domain, dns.TypeNS), Ns: "ns." + z.domain})
		if z.nsIP != nil {
			resp.Extra = addressRecords("ns."+z.domain, dns.TypeANY, z.nsIP, z.ttl)
		}
	}
}

// service answers <tag>.<service>.service.<domain> and reports whether the
// service is known.
func (z zone) service(resp *dns.Msg, q dns.Question, service, tag string) bool {
	eps, known := z.view.Passing(service, tag)
	if !known {
		return false
	}
	// A random order spreads the clients that take the first answer.
	rand.Shuffle(len(eps), func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
	eps = eps[:min(len(eps), maxAnswers)]
	for _, ep := range eps {
		addr, err := netip.ParseAddr(ep.Address)
		isIP := err == nil && addr.Zone() == "" // a zone means nothing to another host
		if q.Qtype == dns.TypeSRV {
			z.srv(resp, q.Name, service, ep, addr, isIP)
			continue
		}
		if isIP {
			resp.Answer = append(resp.Answer, addressRecords(q.Name, q.Qtype, addr.Unmap().AsSlice(), z.ttl)...)
		}
		// A host name has no address here: SRV names it.
	}
	return true
}

// srv adds an instance's SRV record. An instance at an IP address gets a
// name of its own, <id>.<service>.instance.<domain>, with its address in
// the additional section, as Consul does with node names; one at a host
// name gets that name.
func (z zone) srv(resp *dns.Msg, qname, service string, ep view.Endpoint, addr netip.Addr, isIP bool) {
	target := dns.Fqdn(ep.Address)
	if isIP {
		target = ep.ID + "." + service + ".instance." + z.domain
	}
	if _, ok := dns.IsDomainName(target); !ok {
		return // an id too long for a DNS label
	}
	resp.Answer = append(resp.Answer, &dns.SRV{
		Hdr: z.header(qname, dns.TypeSRV), Priority: 1, Weight: 1, Port: uint16(ep.Port), Target: target,
	})
	if isIP {
		resp.Extra = append(resp.Extra, addressRecords(target, dns.TypeANY, addr.Unmap().AsSlice(), z.ttl)...)
	}
}

// instance answers <id>.<service>.instance.<domain>, the target of SRV
// records, and reports whether that instance is live and passing.
func (z zone) instance(resp *dns.Msg, q dns.Question, service, id string) bool {
	eps, _ := z.view.Passing(service, "")
	for _, ep := range eps {
		if !strings.EqualFold(ep.ID, id) {
			continue
		}
		if addr, err := netip.ParseAddr(ep.Address); err == nil && addr.Zone() == "" {
			resp.Answer = addressRecords(q.Name, q.Qtype, addr.Unmap().AsSlice(), z.ttl)
		}
		return true
	}
	return false
}

// addressRecords returns the A or AAAA record of ip for name, if qtype
// asks for its family (ANY asks for both).
func addressRecords(name string, qtype uint16, ip net.IP, ttl uint32) []dns.RR {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	if v4 := ip.To4(); v4 != nil {
		if qtype == dns.TypeA || qtype == dns.TypeANY {
			return []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: v4}}
		}
		return nil
	}
	if qtype == dns.TypeAAAA || qtype == dns.TypeANY {
		return []dns.RR{&dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip}}
	}
	return nil
}

func (z zone) header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: z.ttl}
}

// soa is the zone's SOA record. Its minimum, the TTL of negative answers,
// is the zone's TTL: a cache should not remember "no such service" longer
// than it would remember an instance.
func (z zone) soa() dns.RR {
	return &dns.SOA{
		Hdr:     z.header(z.domain, dns.TypeSOA),
		Ns:      "ns." + z.domain,
		Mbox:    "hostmaster." + z.domain,
		Serial:  uint32(time.Now().Unix()), // nothing transfers the zone: any growing number will do
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  z.ttl,
	}
}
