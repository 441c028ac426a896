package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Key names (docs/redis.md). Every key of one service carries the hash tag
// {name}, so a script that touches them all runs on one Cluster node.
const (
	catalogKey    = "service:catalog" // SET of service names, for Snapshot and expiry
	changeChannel = "service:changes" // pub/sub channel of change notices
)

// serviceKeys are the KEYS of every script, in the order scripts.go names.
func serviceKeys(service string) []string {
	prefix := "service:{" + service + "}:"
	return []string{prefix + "index", prefix + "instances", prefix + "state", prefix + "deadlines"}
}

// noticeHead is ARGV[2] of every script: the start of its notices.
func noticeHead(origin, service string) string {
	return `{"origin":"` + origin + `","service":` + jsonString(service)
}

// serviceNames are a service's script keys and notice head, built once per
// service rather than at every heartbeat.
type serviceNames struct {
	keys []string
	head string
}

func newServiceNames(service, origin string) serviceNames {
	return serviceNames{keys: serviceKeys(service), head: noticeHead(origin, service)}
}

// record is the part of an instance that only a registration changes,
// stored as JSON in service:{name}:instances. Status, last heartbeat and
// deadline live in the state hash and deadlines set, which heartbeats
// rewrite without touching this JSON.
type record struct {
	Address      string            `json:"address"`
	Port         int               `json:"port"`
	Tags         []string          `json:"tags"`
	Metadata     map[string]string `json:"metadata"`
	TTLSeconds   int               `json:"ttl_seconds"`
	RegisteredAt int64             `json:"registered_at"` // ms since the epoch
}

// notice is a change as the scripts publish and return it.
type notice struct {
	Origin    string             `json:"origin"`
	Type      registry.EventType `json:"type"`
	Service   string             `json:"service"`
	ID        string             `json:"id"`
	Index     uint64             `json:"index"`
	Rev       uint64             `json:"rev"`    // the registration the record belongs to; 0: unknown
	Record    json.RawMessage    `json:"record"` // absent from a plain heartbeat's notice; see recordCache
	Status    registry.Status    `json:"status"`
	Heartbeat int64              `json:"heartbeat"` // ms since the epoch
	Expires   int64              `json:"expires"`   // ms since the epoch

	rec record
}

// errRecordUnknown is a heartbeat notice without its record, for a
// registration whose record this process does not hold.
var errRecordUnknown = errors.New("heartbeat notice for a record this process does not hold")

// cachedRecord is a decoded record and the rev of its registration.
type cachedRecord struct {
	rev uint64
	rec record
}

// recordCache holds the record of every instance this process has heard
// of, by service and id, so that heartbeat notices need not carry it and
// the records of a periodic snapshot are decoded only once. A record is
// used only for a notice of the same rev, and revs are random per
// registration, so an entry that is out of date is never used, only
// replaced: the cache needs no ordering. Notices of removals delete
// entries; Snapshot prunes what such notices missed.
type recordCache struct {
	mu       sync.Mutex
	services map[string]map[string]cachedRecord
}

// lookup returns the cached record of an instance (rev 0 when none).
func (c *recordCache) lookup(service, id string) cachedRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.services[service][id]
}

func (c *recordCache) store(service, id string, r cachedRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services == nil {
		c.services = map[string]map[string]cachedRecord{}
	}
	ids := c.services[service]
	if ids == nil {
		ids = map[string]cachedRecord{}
		c.services[service] = ids
	}
	ids[id] = r
}

func (c *recordCache) remove(service, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.services[service], id)
}

// prune keeps only the entries of service that a snapshot holds. One that
// a registration made after the snapshot is dropped too; that costs one
// fetch of its record later.
func (c *recordCache) prune(service string, live map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.services[service] {
		if !live[id] {
			delete(c.services[service], id)
		}
	}
}

// decodeNotice decodes a notice and keeps the cache in step with it. A
// notice without a record takes it from held, when held is the same
// registration (the caller's own heartbeat), else from the cache.
// Cached records share their tags and metadata, so instance() hands out
// clones.
func (c *recordCache) decodeNotice(data string, held cachedRecord) (notice, error) {
	n, ok := parseShortHeartbeat(data)
	if !ok {
		if err := json.Unmarshal([]byte(data), &n); err != nil {
			return n, fmt.Errorf("decode change notice: %w", err)
		}
	}
	switch {
	case n.Type == registry.EventDeregistered || n.Type == registry.EventExpired:
		c.remove(n.Service, n.ID)
	case len(n.Record) == 0:
		if held.rev == 0 || held.rev != n.Rev {
			held = c.lookup(n.Service, n.ID)
		}
		if held.rev == 0 || held.rev != n.Rev {
			return n, fmt.Errorf("change notice %s/%s rev %d: %w", n.Service, n.ID, n.Rev, errRecordUnknown)
		}
		n.rec = held.rec
		return n, nil
	case n.Rev != 0:
		if cur := c.lookup(n.Service, n.ID); cur.rev == n.Rev {
			n.rec = cur.rec // the same registration: skip decoding tags and metadata
			return n, nil
		}
	}
	if err := json.Unmarshal(n.Record, &n.rec); err != nil {
		return n, fmt.Errorf("decode change notice's record: %w", err)
	}
	if n.Rev != 0 && n.Type != registry.EventDeregistered && n.Type != registry.EventExpired {
		c.store(n.Service, n.ID, cachedRecord{rev: n.Rev, rec: n.rec})
	}
	return n, nil
}

func (n notice) instance() registry.Instance {
	return registry.Instance{
		Service:       n.Service,
		ID:            n.ID,
		Address:       n.rec.Address,
		Port:          n.rec.Port,
		Tags:          n.rec.Tags,
		Metadata:      n.rec.Metadata,
		TTLSeconds:    n.rec.TTLSeconds,
		Status:        n.Status,
		RegisteredAt:  fromMillis(n.rec.RegisteredAt),
		LastHeartbeat: fromMillis(n.Heartbeat),
		ExpiresAt:     fromMillis(n.Expires),
	}.Clone()
}

func (n notice) event() registry.Event {
	return registry.Event{Type: n.Type, Service: n.Service, Instance: n.instance(), Index: n.Index}
}

// Times are stored as whole milliseconds since the epoch: absolute, so a
// failover or restart never resets a deadline.
func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// jsonString quotes s as a JSON string; names made of the characters that
// validation allows need no escaping, so the common case skips the encoder.
func jsonString(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s) // a string always encodes
			return string(b)
		}
	}
	return `"` + s + `"`
}
