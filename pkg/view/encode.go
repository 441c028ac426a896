package view

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sagaproject/saga/pkg/registry"
)

// A lookup's answer is encoded by hand rather than by encoding/json: the
// answer of a big service is tens of megabytes, and reflection, a buffer
// grown by doubling and the copies after it cost the encoding most of its
// time and the garbage collector most of its work. The bytes are the same
// as json.Marshal's (encode_test.go proves it).

// lookupSizeHint guesses the size of an answer, so that its buffer is
// allocated once.
func lookupSizeHint(service string, list []*registry.Instance) int {
	n := 64 + len(service)
	for _, in := range list {
		n += 230 + len(in.Service) + len(in.ID) + len(in.Address)
		for _, t := range in.Tags {
			n += len(t) + 3
		}
		for k, v := range in.Metadata {
			n += len(k) + len(v) + 6
		}
	}
	return n
}

// appendLookup appends {"service","index","instances"} and a newline.
func appendLookup(b []byte, service string, index uint64, list []*registry.Instance) []byte {
	b = append(b, `{"service":`...)
	b = appendString(b, service)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"instances":[`...)
	for i, in := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInstance(b, in)
	}
	return append(b, "]}\n"...)
}

// appendInstance appends one instance as json.Marshal would.
func appendInstance(b []byte, in *registry.Instance) []byte {
	b = append(b, `{"service":`...)
	b = appendString(b, in.Service)
	b = append(b, `,"id":`...)
	b = appendString(b, in.ID)
	b = append(b, `,"address":`...)
	b = appendString(b, in.Address)
	b = append(b, `,"port":`...)
	b = strconv.AppendInt(b, int64(in.Port), 10)
	b = append(b, `,"tags":`...)
	if in.Tags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, t := range in.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t)
		}
		b = append(b, ']')
	}
	b = append(b, `,"metadata":`...)
	if in.Metadata == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		keys := make([]string, 0, len(in.Metadata))
		for k := range in.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, in.Metadata[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"ttl_seconds":`...)
	b = strconv.AppendInt(b, int64(in.TTLSeconds), 10)
	b = append(b, `,"status":`...)
	b = appendString(b, string(in.Status))
	b = append(b, `,"registered_at":`...)
	b = appendTime(b, in.RegisteredAt)
	b = append(b, `,"last_heartbeat":`...)
	b = appendTime(b, in.LastHeartbeat)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, in.ExpiresAt)
	if len(in.Checks) > 0 {
		// Few instances have checks: encoding/json is fast enough for them.
		checks, err := json.Marshal(in.Checks)
		if err != nil {
			panic(fmt.Sprintf("view: encode checks: %v", err)) // strings, ints and times always encode
		}
		b = append(b, `,"checks":`...)
		b = append(b, checks...)
	}
	return append(b, '}')
}

// appendTime appends t as time.Time's MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// by default: quotes, backslashes and control characters; <, > and & (so
// the answer is safe inside HTML); invalid UTF-8 as U+FFFD; U+2028 and
// U+2029.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
