package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// An instance record on disk is a fixed header followed by the fields that
// change only when the instance is registered again:
//
//	[0]      record format (1)
//	[1]      status (1 passing, 2 warning, 3 critical)
//	[2:10]   last heartbeat, Unix nanoseconds, big-endian
//	[10:18]  expires at, Unix nanoseconds, big-endian
//	[18:]    the static part: port, TTL seconds and registered-at as varints,
//	         then the address, the tags and the metadata as
//	         length-prefixed strings (counts first), then, only for an
//	         instance with checks, their definitions as one length-prefixed
//	         JSON array (records written before checks existed end after
//	         the metadata and still read the same).
//
// Memory holds only the static part of each instance, already encoded, and
// the header fields as numbers: a heartbeat rewrites two numbers, and the
// lazy flush writes the header back without re-encoding anything.
const (
	recordFormat     = 1
	recordHeaderSize = 18
)

// maxStringBytes bounds any string in a record, well above every limit of
// registry.Registration.Validate, so that a damaged length cannot make the
// decoder allocate gigabytes.
const maxStringBytes = 4096

// maxChecksBytes bounds the JSON of an instance's checks, which the
// request body's 64 KiB bounds already.
const maxChecksBytes = 64 << 10

var errShortRecord = errors.New("record is truncated")

var statusCodes = map[registry.Status]byte{
	registry.StatusPassing:  1,
	registry.StatusWarning:  2,
	registry.StatusCritical: 3,
}

var statusByCode = [...]registry.Status{1: registry.StatusPassing, 2: registry.StatusWarning, 3: registry.StatusCritical}

// entry is one instance in memory.
type entry struct {
	static        []byte // encodeStatic's output; never modified once built
	lastHeartbeat int64  // Unix nanoseconds
	expiresAt     int64  // Unix nanoseconds
	status        registry.Status
	ttlSeconds    uint32 // also in static; kept here for heartbeats
	dirty         bool   // the deadline changed in memory since it was last written
}

// ttl is the instance's time-to-live.
func (e entry) ttl() time.Duration { return time.Duration(e.ttlSeconds) * time.Second }

// unixNano keeps the zero time as zero, so that it survives a round trip.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// newEntry turns a validated instance into its memory form.
func newEntry(in registry.Instance) entry {
	return entry{
		static:        encodeStatic(in),
		lastHeartbeat: unixNano(in.LastHeartbeat),
		expiresAt:     unixNano(in.ExpiresAt),
		status:        in.Status,
		ttlSeconds:    uint32(in.TTLSeconds),
	}
}

func encodeStatic(in registry.Instance) []byte {
	size := 3*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(in.Address) + 2*binary.MaxVarintLen64
	for _, tag := range in.Tags {
		size += binary.MaxVarintLen64 + len(tag)
	}
	for k, v := range in.Metadata {
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(in.Port))
	b = binary.AppendUvarint(b, uint64(in.TTLSeconds))
	b = binary.AppendVarint(b, unixNano(in.RegisteredAt))
	b = appendString(b, in.Address)
	b = binary.AppendUvarint(b, uint64(len(in.Tags)))
	for _, tag := range in.Tags {
		b = appendString(b, tag)
	}
	b = binary.AppendUvarint(b, uint64(len(in.Metadata)))
	for k, v := range in.Metadata {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	if len(in.Checks) > 0 {
		// Definitions are validated, so they always encode.
		checks, _ := json.Marshal(registry.CheckDefinitions(in.Checks))
		b = appendString(b, string(checks))
	}
	// Trim the estimate's slack: 100,000 instances live in memory.
	return append(make([]byte, 0, len(b)), b...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// value is the record written to disk for e.
func (e entry) value() []byte {
	b := make([]byte, recordHeaderSize, recordHeaderSize+len(e.static))
	b[0] = recordFormat
	b[1] = statusCodes[e.status]
	binary.BigEndian.PutUint64(b[2:10], uint64(e.lastHeartbeat))
	binary.BigEndian.PutUint64(b[10:18], uint64(e.expiresAt))
	return append(b, e.static...)
}

// parseEntry reads a record from disk, checking every field, so that a
// damaged file is reported instead of loaded.
func parseEntry(v []byte) (entry, error) {
	if len(v) < recordHeaderSize {
		return entry{}, errShortRecord
	}
	if v[0] != recordFormat {
		return entry{}, fmt.Errorf("unknown record format %d", v[0])
	}
	if int(v[1]) >= len(statusByCode) || statusByCode[v[1]] == "" {
		return entry{}, fmt.Errorf("unknown status code %d", v[1])
	}
	e := entry{
		static:        append([]byte(nil), v[recordHeaderSize:]...), // bbolt's bytes live only as long as the transaction
		lastHeartbeat: int64(binary.BigEndian.Uint64(v[2:10])),
		expiresAt:     int64(binary.BigEndian.Uint64(v[10:18])),
		status:        statusByCode[v[1]],
	}
	in, err := e.instance("", "")
	if err != nil {
		return entry{}, err
	}
	if in.TTLSeconds < registry.MinTTLSeconds {
		return entry{}, fmt.Errorf("TTL of %d seconds", in.TTLSeconds)
	}
	e.ttlSeconds = uint32(in.TTLSeconds)
	return e, nil
}

// instance decodes e into the instance service/id.
func (e entry) instance(service, id string) (registry.Instance, error) {
	d := decoder{b: e.static}
	in := registry.Instance{
		Service:       service,
		ID:            id,
		Port:          int(d.uvarint(65535)),
		TTLSeconds:    int(d.uvarint(registry.MaxTTLSeconds)),
		RegisteredAt:  fromUnixNano(d.varint()),
		Address:       d.string(),
		Status:        e.status,
		LastHeartbeat: fromUnixNano(e.lastHeartbeat),
		ExpiresAt:     fromUnixNano(e.expiresAt),
	}
	in.Tags = make([]string, d.uvarint(registry.MaxTags))
	for i := range in.Tags {
		in.Tags[i] = d.string()
	}
	n := int(d.uvarint(registry.MaxMetadataKeys))
	in.Metadata = make(map[string]string, n)
	for range n {
		k := d.string()
		in.Metadata[k] = d.string()
	}
	if d.err == nil && len(d.b) != 0 {
		raw := d.bytes(maxChecksBytes)
		if d.err == nil {
			if err := json.Unmarshal(raw, &in.Checks); err != nil {
				d.err = fmt.Errorf("checks: %w", err)
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d stray bytes after the record", len(d.b))
	}
	return in, d.err
}

// decoder reads varints and strings, remembering the first error so that
// callers check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	if v > limit {
		d.err = fmt.Errorf("value %d is over the limit %d", v, limit)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes(maxStringBytes)) }

// bytes reads a length-prefixed string of at most limit bytes, without
// copying it.
func (d *decoder) bytes(limit uint64) []byte {
	n := d.uvarint(limit)
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errShortRecord
	}
	if d.err != nil {
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}
