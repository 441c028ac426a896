package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
)

// changesBuffer is how many events Changes holds before the store drops
// events and owes its reader an EventResync.
const changesBuffer = 4096

// receiveTimeout is how long the subscriber waits for a notice before it
// pings the subscription to find a dead connection.
const receiveTimeout = 5 * time.Second

// subscribe reads the change channel until ctx ends. go-redis reconnects
// and subscribes again by itself; each (re)subscription may have missed
// notices, so it sends EventResync and signals TokenChanges.
func (s *Store) subscribe(ctx context.Context) {
	ownPrefix := `{"origin":"` + s.origin + `"` // how noticeLua starts our notices
	failures := 0
	for ctx.Err() == nil {
		msg, err := s.pubsub.ReceiveTimeout(ctx, receiveTimeout)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, goredis.ErrClosed) {
				return
			}
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				_ = s.pubsub.Ping(ctx) // a dead connection fails here and is replaced
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(failures)):
			}
			failures++
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				s.due.lost()
				s.feed.Resync()
				s.tokensChanged()
			}
		case *goredis.Message:
			if strings.HasPrefix(m.Payload, tokenNoticePrefix) {
				s.tokensChanged() // ours too: writeToken signalled already, and twice costs nothing
				continue
			}
			if strings.HasPrefix(m.Payload, ownPrefix) {
				continue // our own change, already on the feed; skip decoding it
			}
			n, err := s.records.decodeNotice(m.Payload, cachedRecord{})
			if errors.Is(err, errRecordUnknown) {
				var ok bool
				if n, ok, err = s.fetchRecord(ctx, n); err == nil && !ok {
					continue // outdated: the notice of what replaced it follows
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					// The view would miss this deadline: reload it whole.
					s.logger.Warn("resyncing: a heartbeat's record could not be read", "err", err)
					s.feed.Resync()
					continue
				}
			}
			if err != nil {
				s.logger.Warn("ignoring a malformed change notice", "err", err)
				continue
			}
			s.pulls.saw(n)
			ev := n.event()
			s.due.saw(ev)
			s.feed.Emit(ev)
		}
	}
}

// fetchRecord completes a heartbeat notice whose record this process does
// not hold (it started after the registration, or missed its notice) by
// reading the instance: one round trip, made by the subscriber, never on a
// request's path. ok is false when the notice is outdated: the instance
// has gone or was registered again since, and the notice of that follows.
func (s *Store) fetchRecord(ctx context.Context, n notice) (_ notice, ok bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	raw, err := recordScript.Run(ctx, s.client, serviceKeys(n.Service), s.scriptArgs(n.Service, n.ID)...).Text()
	if errors.Is(err, goredis.Nil) {
		return n, false, nil
	}
	if err != nil {
		return n, false, fmt.Errorf("read the record of %s/%s: %w", n.Service, n.ID, err)
	}
	cur, err := s.records.decodeNotice(raw, cachedRecord{}) // caches the record
	if err != nil || cur.Rev != n.Rev {
		return n, false, err
	}
	n.rec = cur.rec
	return n, true, nil
}

// deliver decodes a notice a script returned and puts its event on Changes.
func (s *Store) deliver(raw string) (registry.Event, error) {
	return s.deliverHeld(raw, cachedRecord{})
}

// deliverHeld is deliver for a notice that may leave out the record held.
func (s *Store) deliverHeld(raw string, held cachedRecord) (registry.Event, error) {
	n, err := s.records.decodeNotice(raw, held)
	if err != nil {
		return registry.Event{}, err
	}
	return s.deliverNotice(n), nil
}

// deliverNotice hands a decoded notice's event to this process's view.
func (s *Store) deliverNotice(n notice) registry.Event {
	s.pulls.saw(n)
	ev := n.event()
	s.due.saw(ev)
	s.feed.Emit(ev)
	return ev
}
