package registry

import (
	"context"
	"log/slog"
	"time"
)

// ReapInterval is how often the Reaper looks for expired instances. It keeps
// the expired event within one second of the deadline.
const ReapInterval = 250 * time.Millisecond

// Expirer is what the Reaper asks of the store.
type Expirer interface {
	ExpireDue(ctx context.Context, now time.Time) ([]Event, error)
}

// Reaper removes expired instances from a store at a steady pace and hands
// each expiry event to apply (the in-memory view). Lookups never depend on
// it: they filter on expires_at themselves.
type Reaper struct {
	store    Expirer
	clock    Clock
	interval time.Duration
	apply    func(Event)
	logger   *slog.Logger
}

// NewReaper returns a reaper over store; apply receives every expiry event.
func NewReaper(store Expirer, clock Clock, apply func(Event), logger *slog.Logger) *Reaper {
	return &Reaper{store: store, clock: clock, interval: ReapInterval, apply: apply, logger: logger.With("component", "reaper")}
}

// Run reaps until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		events, err := r.store.ExpireDue(ctx, r.clock.Now())
		if err != nil {
			if !failing && ctx.Err() == nil {
				r.logger.Warn("expiring instances failed; will retry", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		for _, ev := range events {
			r.logger.Info("instance expired", "service", ev.Service, "id", ev.Instance.ID)
			r.apply(ev)
		}
	}
}
