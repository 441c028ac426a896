package redisstore

import (
	"strconv"
	"strings"

	"github.com/sagaproject/saga/pkg/registry"
)

// parseShortHeartbeat decodes the notice of a plain heartbeat, the one sent
// at every heartbeat and so the one decoded most, without encoding/json's
// reflection: heartbeatScript writes its fields in one fixed order,
//
//	{"origin":"…","service":"…","type":"heartbeat","id":"…","index":N,
//	 "rev":N,"status":"…","heartbeat":N,"expires":N}
//
// ok is false for anything else (another type, a field in another place,
// a string with an escape), which then goes through encoding/json.
func parseShortHeartbeat(data string) (n notice, ok bool) {
	p := scanner{rest: data, ok: true}
	p.literal(`{"origin":`)
	n.Origin = p.str()
	p.literal(`,"service":`)
	n.Service = p.str()
	p.literal(`,"type":"heartbeat","id":`)
	n.ID = p.str()
	p.literal(`,"index":`)
	n.Index = p.uint()
	p.literal(`,"rev":`)
	n.Rev = p.uint()
	p.literal(`,"status":`)
	n.Status = registry.Status(p.str())
	p.literal(`,"heartbeat":`)
	n.Heartbeat = int64(p.uint())
	p.literal(`,"expires":`)
	n.Expires = int64(p.uint())
	p.literal(`}`)
	if !p.ok || p.rest != "" || n.Heartbeat < 0 || n.Expires < 0 {
		return notice{}, false
	}
	n.Type = registry.EventHeartbeat
	return n, true
}

// scanner reads a JSON text of a known shape; after the first mismatch ok
// is false and every read returns a zero value.
type scanner struct {
	rest string
	ok   bool
}

func (p *scanner) literal(s string) {
	if p.ok && strings.HasPrefix(p.rest, s) {
		p.rest = p.rest[len(s):]
		return
	}
	p.ok = false
}

// str reads a JSON string that has no escapes.
func (p *scanner) str() string {
	if !p.ok || !strings.HasPrefix(p.rest, `"`) {
		p.ok = false
		return ""
	}
	end := strings.IndexByte(p.rest[1:], '"')
	if end < 0 {
		p.ok = false
		return ""
	}
	s := p.rest[1 : 1+end]
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == '\\' || s[i] >= 0x7f {
			p.ok = false
			return ""
		}
	}
	p.rest = p.rest[end+2:]
	return s
}

// uint reads a JSON number made of digits only.
func (p *scanner) uint() uint64 {
	if !p.ok {
		return 0
	}
	end := 0
	for end < len(p.rest) && p.rest[end] >= '0' && p.rest[end] <= '9' {
		end++
	}
	v, err := strconv.ParseUint(p.rest[:end], 10, 64)
	if err != nil {
		p.ok = false
		return 0
	}
	p.rest = p.rest[end:]
	return v
}
