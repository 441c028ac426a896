package view

import (
	"context"
	"log/slog"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Follow keeps v current from store until ctx ends or the store closes its
// feed: it applies every change, reloads a snapshot when the store reports
// lost events, and reloads every refresh anyway (the fallback for a feed
// that lost events without saying so).
func Follow(ctx context.Context, store registry.Store, v *View, refresh time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(refresh)
	defer ticker.Stop()
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
		}
	}
}
