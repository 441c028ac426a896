package registry

import (
	"context"
	"time"
)

// EventType names a change to the registry.
type EventType string

// Event types that clients see (SSE, SPEC §2).
const (
	EventRegistered   EventType = "registered"   // a new instance id
	EventUpdated      EventType = "updated"      // an id registered again, or its status changed
	EventDeregistered EventType = "deregistered" // removed by its owner
	EventExpired      EventType = "expired"      // removed because its TTL ran out
)

// Event types internal to Saga, never sent to clients.
const (
	// EventHeartbeat carries a renewed deadline. It changes no index: lookups
	// need the new expires_at, watchers need not wake.
	EventHeartbeat EventType = "heartbeat"
	// EventResync tells the reader of a change feed that events may have been
	// lost (a reconnect, a reader that fell behind): reload a Snapshot.
	EventResync EventType = "resync"
)

// Public reports whether clients may see events of this type.
func (t EventType) Public() bool {
	return t == EventRegistered || t == EventUpdated || t == EventDeregistered || t == EventExpired
}

// Event is one change to one instance. Index is the service's index after
// the change (unchanged for EventHeartbeat, zero for EventResync).
type Event struct {
	Type     EventType `json:"type"`
	Service  string    `json:"service"`
	Instance Instance  `json:"instance"`
	Index    uint64    `json:"index"`
}

// Snapshot is the whole registry at one moment.
type Snapshot struct {
	// Services holds every service that has an index, including services
	// whose last instance has gone: their index must never go backwards.
	Services map[string]ServiceSnapshot
}

// ServiceSnapshot is one service in a Snapshot.
type ServiceSnapshot struct {
	Index     uint64
	Instances []Instance // may include instances past their deadline that are not yet reaped
}

// Store keeps the registry. Every store passes the registrytest suite.
//
// Indexes: each service has its own index, starting at 1 with its first
// change and growing by at least one with every change to it (register,
// deregister, expiry, status change). Indexes survive restarts and are kept
// after a service's last instance has gone.
//
// Times: callers pass "now" explicitly; stores compare deadlines against it
// and never read a clock of their own, so tests control time.
//
// Every mutating method returns the Event it caused, and the same event is
// also delivered on Changes (for stores shared by several Saga processes,
// Changes also delivers the other processes' events).
type Store interface {
	// Register stores in, replacing an instance with the same service and id.
	// The event is EventRegistered for a new id (or one whose predecessor
	// had expired), EventUpdated for a replacement.
	Register(ctx context.Context, in Instance) (Event, error)

	// Heartbeat renews an instance's deadline to now + its TTL and, when
	// status is not empty, sets its status. It returns ErrNotFound when the
	// instance is unknown or its deadline is not after now. The event is
	// EventHeartbeat, or EventUpdated (with a new index) when the status
	// changed. On stores that promise it, a heartbeat writes nothing to disk.
	Heartbeat(ctx context.Context, service, id string, status Status, now time.Time) (Event, error)

	// Deregister removes an instance. ErrNotFound when it is unknown.
	Deregister(ctx context.Context, service, id string) (Event, error)

	// ExpireDue removes every instance whose deadline is not after now and
	// returns one EventExpired per removed instance. When several processes
	// share a store, each instance is expired by exactly one of them.
	ExpireDue(ctx context.Context, now time.Time) ([]Event, error)

	// GrantGrace moves every deadline earlier than now + the instance's TTL
	// to now + TTL (self-preservation: after Saga or its store was away,
	// instances could not heartbeat, so they get one full TTL to come back).
	GrantGrace(ctx context.Context, now time.Time) error

	// Snapshot returns every service with its index and instances.
	Snapshot(ctx context.Context) (Snapshot, error)

	// Changes is the feed of events, in index order per service. It has one
	// reader. A store never blocks a write on a slow reader: it drops events
	// and later sends EventResync.
	Changes() <-chan Event

	// Ping reports whether the store answers; ErrUnavailable when not.
	Ping(ctx context.Context) error

	// Close flushes what is pending and releases the store.
	Close() error
}
