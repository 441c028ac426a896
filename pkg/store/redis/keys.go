package redis

import (
	"encoding/json"
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
	Record    json.RawMessage    `json:"record"` // decoded through a recordCache into rec
	Status    registry.Status    `json:"status"`
	Heartbeat int64              `json:"heartbeat"` // ms since the epoch
	Expires   int64              `json:"expires"`   // ms since the epoch

	rec record
}

// recordCache remembers decoded records by their JSON. A record changes
// only when its instance registers again, so every heartbeat notice after
// the first skips decoding tags and metadata, the costly part.
type recordCache struct {
	mu      sync.Mutex
	records map[string]record
}

// maxCachedRecords bounds the cache; when full it starts over.
const maxCachedRecords = 16384

func (c *recordCache) decode(raw []byte) (record, error) {
	c.mu.Lock()
	r, ok := c.records[string(raw)]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, err
	}
	c.mu.Lock()
	if c.records == nil || len(c.records) >= maxCachedRecords {
		c.records = make(map[string]record)
	}
	c.records[string(raw)] = r
	c.mu.Unlock()
	return r, nil
}

// decodeNotice decodes a notice. Cached records share their tags and
// metadata, so instance() hands out clones.
func (c *recordCache) decodeNotice(data string) (notice, error) {
	var n notice
	if err := json.Unmarshal([]byte(data), &n); err != nil {
		return n, fmt.Errorf("decode change notice: %w", err)
	}
	rec, err := c.decode(n.Record)
	if err != nil {
		return n, fmt.Errorf("decode change notice's record: %w", err)
	}
	n.rec = rec
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
