package view

import (
	"context"
	"log/slog"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// feed is what Follow asks of the store.
type feed interface {
	Changes() <-chan registry.Event
	Snapshot(ctx context.Context) (registry.Snapshot, error)
}

// gapTimeout is how long a gap in a service's indexes may stay open before
// Follow reloads a snapshot to fill it. Gaps close in milliseconds when
// events merely arrive out of order; one that stays open is an event the
// feed will never bring, and every Saga must agree with the store within
// a second (SPEC §1).
const gapTimeout = 300 * time.Millisecond

// Follow keeps v current from store until ctx ends or the store closes its
// feed: it applies every change, reloads a snapshot when the store reports
// lost events or a gap in a service's indexes stays open (View.Lagging),
// and reloads every refresh anyway (the fallback for a feed that lost
// events without saying so).
func Follow(ctx context.Context, store feed, v *View, refresh time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(refresh)
	defer ticker.Stop()
	gaps := time.NewTicker(gapTimeout / 3)
	defer gaps.Stop()
	failing := false
	reload := func() {
		snap, err := store.Snapshot(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				logger.Warn("reloading the registry failed; serving what is in memory", "err", err)
			}
			failing = true
			return
		}
		if failing {
			logger.Info("reloading the registry works again")
		}
		failing = false
		v.Load(snap)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-store.Changes():
			if !ok {
				return
			}
			if ev.Type == registry.EventResync {
				reload()
				continue
			}
			v.Apply(ev)
		case <-ticker.C:
			reload()
		case <-gaps.C:
			if v.Lagging(gapTimeout) {
				reload()
			}
		}
	}
}
