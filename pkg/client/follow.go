package client

import (
	"context"
	"errors"
	"io"

	"github.com/sagaproject/saga/pkg/registry"
)

// Follow calls fn with every event of the given services (every service
// when none is given) until ctx ends or fn returns an error, which Follow
// returns. Unlike Events, it opens the stream again when the server ends
// or breaks it (a restart or an upgrade ends every stream), retrying for up
// to 30 seconds, and skips events at or below the last index it passed on
// for their service, so fn sees none twice. Events that happen while no
// stream is open are not replayed: Lookup a service to learn its state.
func (c *Client) Follow(ctx context.Context, services []string, fn func(registry.Event) error) error {
	return c.FollowOpened(ctx, services, nil, fn)
}

// FollowOpened is Follow that also calls opened (when not nil) each time
// the stream is open, the first time included: from then on, until the
// stream breaks, no event of the services is missed. A caller that says
// it is following, or that writes only once it follows, waits for it.
func (c *Client) FollowOpened(ctx context.Context, services []string, opened func(), fn func(registry.Event) error) error {
	seen := map[string]uint64{} // the last index passed on, per service
	// The first open fails at once, as Events does; later ones wait out a restart.
	stream, err := c.Events(ctx, services...)
	for {
		if done(ctx) {
			return nil // the caller ended it
		}
		if err != nil {
			return err
		}
		if opened != nil {
			opened()
		}
		err = followStream(stream, seen, fn)
		_ = stream.Close()
		if done(ctx) {
			return nil
		}
		var fe *fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case errors.Is(err, io.EOF): // the server ended the stream: open it again
		default:
			if _, ok := retryable(err); !ok {
				return err
			}
		}
		err = retryRestart(ctx, func() (err error) {
			stream, err = c.Events(ctx, services...)
			return err
		})
	}
}

// done reports whether ctx has ended.
func done(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// followStream passes on the stream's new events until it ends.
func followStream(stream *EventStream, seen map[string]uint64, fn func(registry.Event) error) error {
	for {
		ev, err := stream.Next()
		if err != nil {
			return err
		}
		if ev.Index != 0 && ev.Index <= seen[ev.Service] {
			continue
		}
		seen[ev.Service] = ev.Index
		if err := fn(ev); err != nil {
			return &fnError{err}
		}
	}
}

// fnError carries fn's error out of the stream unretried.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }
