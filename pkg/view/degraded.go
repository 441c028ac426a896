package view

import (
	"context"
	"log/slog"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Degraded mode (SPEC §2): while the store is unreachable or failing
// writes, heartbeats cannot reach it, so deadlines would pass for instances
// that are alive. The view then serves what was live when the store last
// answered, marked stale, instead of answering "nobody is there".

// Freeze makes the view serve what was live at at: from now on an instance
// counts as live when its deadline is after at, whatever the time. at is
// when the store last answered. Freezing a frozen view keeps the earlier
// moment.
func (v *View) Freeze(at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.frozenAt.Load() != 0 {
		return
	}
	v.frozenAt.Store(at.UnixNano())
	v.dropCachesLocked()
}

// Thaw ends Freeze: instances are live until their deadlines again. Call
// it once the view holds the deadlines that the store's grace moved.
func (v *View) Thaw() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.frozenAt.Swap(0) == 0 {
		return
	}
	v.dropCachesLocked()
}

// Stale reports whether the view is frozen: its answers may leave out
// changes the store could not deliver.
func (v *View) Stale() bool { return v.frozenAt.Load() != 0 }

// liveNow is the moment against which deadlines are compared: the clock's
// time, or the moment of Freeze.
func (v *View) liveNow() time.Time {
	if at := v.frozenAt.Load(); at != 0 {
		return time.Unix(0, at).UTC()
	}
	return v.clock.Now()
}

// dropCachesLocked makes every cached answer stale: they were made against
// another moment of liveness.
func (v *View) dropCachesLocked() {
	for _, svc := range v.services {
		v.touchLocked(svc)
	}
	v.version++
}

// GuardInterval is how often Guard pings the store.
const GuardInterval = 250 * time.Millisecond

// pinger is what Guard asks of the store.
type pinger interface {
	Ping(ctx context.Context) error
	Snapshot(ctx context.Context) (registry.Snapshot, error)
}

// Guard freezes v while store does not answer, until ctx ends. It pings
// every interval; when a ping fails it freezes the view at the last moment
// the store answered, and when the store answers again (it granted its
// instances a TTL of grace first, see registry.Store.GrantGrace) it loads a
// snapshot with the new deadlines and thaws.
func Guard(ctx context.Context, store pinger, v *View, clock registry.Clock, interval time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	lastGood := clock.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		started := clock.Now()
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := store.Ping(pingCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !v.Stale() {
				logger.Warn("store not answering; serving the instances live when it last answered, marked stale", "since", lastGood, "err", err)
				v.Freeze(lastGood)
			}
			continue
		}
		lastGood = started
		if !v.Stale() {
			continue
		}
		snap, err := store.Snapshot(ctx)
		if err != nil {
			continue // still frozen; the next tick tries again
		}
		v.Load(snap)
		v.Thaw()
		logger.Info("store answers again; serving live instances")
	}
}
