package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/sagaproject/saga/pkg/registry"
)

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
