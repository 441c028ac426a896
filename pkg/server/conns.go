package server

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// freshGrace is how long a new connection may take to send its first
	// request before it counts as idle and may be closed to make room.
	freshGrace = time.Second
	// shedWarnEvery spaces the warnings about shedding connections.
	shedWarnEvery = time.Minute
	// minReserve is the least of the descriptor limit kept for the store,
	// files and the listener; a tenth is kept when that is more.
	minReserve = 64
)

// connBudget keeps the open connections within a budget
// (limits.max_connections). Without one, clients that leave keep-alive
// connections open take every file descriptor, and then nothing, not even
// /livez, is accepted. When a new connection would go over, the one idle
// the longest is closed to make room (its client loses nothing but a
// reconnect); when none is idle, the new one is closed at once.
type connBudget struct {
	max    int
	now    func() time.Time
	logger *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*trackedConn
	idle  *list.List // of *trackedConn, idle since the longest first
	fresh *list.List // of *trackedConn, new and without a request yet, oldest first
	// What was shed since the last warning, and when that was.
	closedIdle, refused int
	lastWarn            time.Time
}

type trackedConn struct {
	conn  net.Conn
	since time.Time     // arrived, or went idle
	elem  *list.Element // in idle or fresh; nil while serving a request
	in    *list.List
}

func newConnBudget(maxConns int, logger *slog.Logger) *connBudget {
	return &connBudget{
		max: maxConns, now: time.Now, logger: logger,
		conns: make(map[net.Conn]*trackedConn), idle: list.New(), fresh: list.New(),
	}
}

// connBudgetFor is the budget that maxConns asks for: itself when
// positive, none when negative, and when 0 the soft descriptor limit less
// a reserve of a tenth, or minReserve if that is more (0, none, where the
// limit cannot be read).
func connBudgetFor(maxConns int) int {
	if maxConns != 0 {
		return max(maxConns, 0)
	}
	soft, ok := descriptorLimit()
	if !ok {
		return 0
	}
	return max(soft-max(soft/10, minReserve), 1)
}

// track is the http.Server's ConnState hook.
func (b *connBudget) track(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		b.admit(c)
	case http.StateActive:
		b.mu.Lock()
		if t := b.conns[c]; t != nil {
			t.unlist()
		}
		b.mu.Unlock()
	case http.StateIdle:
		b.mu.Lock()
		if t := b.conns[c]; t != nil {
			t.unlist()
			t.since = b.now()
			t.list(b.idle)
		}
		b.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		b.mu.Lock()
		if t := b.conns[c]; t != nil {
			t.unlist()
			delete(b.conns, c)
		}
		b.mu.Unlock()
	}
}

// admit makes room for c, or closes it when there is none.
func (b *connBudget) admit(c net.Conn) {
	now := b.now()
	b.mu.Lock()
	var victim net.Conn
	if len(b.conns) >= b.max {
		v := b.longestIdleLocked(now)
		if v == nil {
			b.refused++
			b.warnLocked(now)
			b.mu.Unlock()
			_ = c.Close() // its serve goroutine sees the close and ends
			return
		}
		v.unlist()
		delete(b.conns, v.conn)
		victim = v.conn
		b.closedIdle++
		b.warnLocked(now)
	}
	t := &trackedConn{conn: c, since: now}
	t.list(b.fresh)
	b.conns[c] = t
	b.mu.Unlock()
	if victim != nil {
		_ = victim.Close()
	}
}

// longestIdleLocked is the idle connection idle the longest, counting a new
// one that has sent nothing for freshGrace as idle since it arrived.
func (b *connBudget) longestIdleLocked(now time.Time) *trackedConn {
	var best *trackedConn
	if e := b.idle.Front(); e != nil {
		best = e.Value.(*trackedConn)
	}
	if e := b.fresh.Front(); e != nil {
		if f := e.Value.(*trackedConn); now.Sub(f.since) >= freshGrace && (best == nil || f.since.Before(best.since)) {
			best = f
		}
	}
	return best
}

// warnLocked logs what was shed, at most once every shedWarnEvery.
func (b *connBudget) warnLocked(now time.Time) {
	if !b.lastWarn.IsZero() && now.Sub(b.lastWarn) < shedWarnEvery {
		return
	}
	b.logger.Warn("too many open connections; closing idle ones, and new ones when none is idle (limits.max_connections)",
		"max_connections", b.max, "closed_idle", b.closedIdle, "refused", b.refused)
	b.closedIdle, b.refused, b.lastWarn = 0, 0, now
}

// open is how many connections are tracked.
func (b *connBudget) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (t *trackedConn) list(l *list.List) {
	t.elem, t.in = l.PushBack(t), l
}

func (t *trackedConn) unlist() {
	if t.elem != nil {
		t.in.Remove(t.elem)
		t.elem, t.in = nil, nil
	}
}
