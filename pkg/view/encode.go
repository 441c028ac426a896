package view

import (
	"encoding/json"
	"fmt"
	"math/bits"
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

// lookupSizeHint guesses the size of an answer with the given fields, so
// that its buffer is allocated once.
func lookupSizeHint(service string, list []*registry.Instance, fields Fields) int {
	n := 64 + len(service)
	if fields == 0 {
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
	for _, in := range list {
		n += 2
		if fields&fieldService != 0 {
			n += 14 + len(in.Service)
		}
		if fields&fieldID != 0 {
			n += 9 + len(in.ID)
		}
		if fields&fieldAddress != 0 {
			n += 14 + len(in.Address)
		}
		if fields&fieldPort != 0 {
			n += 13
		}
		if fields&fieldTags != 0 {
			n += 10
			for _, t := range in.Tags {
				n += len(t) + 3
			}
		}
		if fields&fieldMetadata != 0 {
			n += 14
			for k, v := range in.Metadata {
				n += len(k) + len(v) + 6
			}
		}
		n += 20 * bits.OnesCount16(uint16(fields&(fieldTTLSeconds|fieldStatus)))
		n += 48 * bits.OnesCount16(uint16(fields&(fieldRegisteredAt|fieldLastHeartbeat|fieldExpiresAt)))
	}
	return n
}

// appendLookup appends {"service","index","instances"} and a newline, each
// instance with the keys of fields (zero: every key).
func appendLookup(b []byte, service string, index uint64, list []*registry.Instance, fields Fields) []byte {
	b = append(b, `{"service":`...)
	b = appendString(b, service)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"instances":[`...)
	for i, in := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInstance(b, in, fields)
	}
	return append(b, "]}\n"...)
}

// appendInstance appends one instance, with the keys of fields (zero: every
// key), as json.Marshal would encode a struct of those keys of
// registry.Instance.
func appendInstance(b []byte, in *registry.Instance, fields Fields) []byte {
	if fields == 0 {
		fields = allFields
	}
	// Every key goes with a leading comma; the first comma becomes the
	// opening brace.
	start := len(b)
	if fields&fieldService != 0 {
		b = append(b, `,"service":`...)
		b = appendString(b, in.Service)
	}
	if fields&fieldID != 0 {
		b = append(b, `,"id":`...)
		b = appendString(b, in.ID)
	}
	if fields&fieldAddress != 0 {
		b = append(b, `,"address":`...)
		b = appendString(b, in.Address)
	}
	if fields&fieldPort != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(in.Port), 10)
	}
	if fields&fieldTags != 0 {
		b = append(b, `,"tags":`...)
		b = appendTags(b, in.Tags)
	}
	if fields&fieldMetadata != 0 {
		b = append(b, `,"metadata":`...)
		b = appendMetadata(b, in.Metadata)
	}
	if fields&fieldTTLSeconds != 0 {
		b = append(b, `,"ttl_seconds":`...)
		b = strconv.AppendInt(b, int64(in.TTLSeconds), 10)
	}
	if fields&fieldStatus != 0 {
		b = append(b, `,"status":`...)
		b = appendString(b, string(in.Status))
	}
	if fields&fieldRegisteredAt != 0 {
		b = append(b, `,"registered_at":`...)
		b = appendTime(b, in.RegisteredAt)
	}
	if fields&fieldLastHeartbeat != 0 {
		b = append(b, `,"last_heartbeat":`...)
		b = appendTime(b, in.LastHeartbeat)
	}
	if fields&fieldExpiresAt != 0 {
		b = append(b, `,"expires_at":`...)
		b = appendTime(b, in.ExpiresAt)
	}
	if fields&fieldChecks != 0 && len(in.Checks) > 0 {
		// Few instances have checks: encoding/json is fast enough for them.
		checks, err := json.Marshal(in.Checks)
		if err != nil {
			panic(fmt.Sprintf("view: encode checks: %v", err)) // strings, ints and times always encode
		}
		b = append(b, `,"checks":`...)
		b = append(b, checks...)
	}
	if len(b) == start {
		b = append(b, '{')
	} else {
		b[start] = '{'
	}
	return append(b, '}')
}

func appendTags(b []byte, tags []string) []byte {
	if tags == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, t := range tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t)
	}
	return append(b, ']')
}

// appendMetadata appends a string map with its keys sorted, as
// encoding/json does.
func appendMetadata(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
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
