package redisstore

import (
	"encoding/json"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

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
	// Checks are the instance's check definitions; absent from records
	// written before checks existed, and from instances without any.
	Checks []registry.Check `json:"checks,omitempty"`
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
		Checks:        n.rec.Checks,
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
