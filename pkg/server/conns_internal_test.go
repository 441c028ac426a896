package server

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

// fakeConn notes whether it was closed.
type fakeConn struct {
	net.Conn
	name   string
	closed atomic.Bool
}

func (c *fakeConn) Close() error { c.closed.Store(true); return nil }

func TestConnBudget(t *testing.T) {
	type event struct {
		at    time.Duration
		conn  string
		state http.ConnState
	}
	tests := []struct {
		name   string
		max    int
		events []event
		closed []string // closed by the budget, in any order
	}{
		{
			name: "within the budget nothing is closed",
			max:  2,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateActive}, {0, "a", http.StateIdle},
				{0, "b", http.StateNew},
			},
		},
		{
			name: "the longest idle makes room",
			max:  2,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateActive},
				{0, "b", http.StateNew}, {0, "b", http.StateActive},
				{1 * time.Millisecond, "b", http.StateIdle},
				{2 * time.Millisecond, "a", http.StateIdle},
				{3 * time.Millisecond, "c", http.StateNew},
			},
			closed: []string{"b"},
		},
		{
			name: "with none idle the new one is refused",
			max:  2,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateActive},
				{0, "b", http.StateNew},
				{0, "c", http.StateNew},
			},
			closed: []string{"c"},
		},
		{
			name: "a new connection that sends nothing counts as idle after a moment",
			max:  2,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateActive},
				{0, "b", http.StateNew},
				{freshGrace, "c", http.StateNew},
			},
			closed: []string{"b"},
		},
		{
			name: "a closed connection frees its place",
			max:  1,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateActive},
				{0, "a", http.StateClosed},
				{0, "b", http.StateNew},
			},
		},
		{
			name: "an active connection is never closed",
			max:  1,
			events: []event{
				{0, "a", http.StateNew}, {0, "a", http.StateIdle},
				{time.Hour, "a", http.StateActive},
				{2 * time.Hour, "b", http.StateNew},
			},
			closed: []string{"b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epoch := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
			var now time.Time
			logs := &asynctest.LogBuffer{}
			b := newConnBudget(tt.max, slog.New(slog.NewTextHandler(logs, nil)))
			b.now = func() time.Time { return now }
			conns := map[string]*fakeConn{}
			for _, ev := range tt.events {
				now = epoch.Add(ev.at)
				c := conns[ev.conn]
				if c == nil {
					c = &fakeConn{name: ev.conn}
					conns[ev.conn] = c
				}
				b.track(c, ev.state)
			}
			want := map[string]bool{}
			for _, name := range tt.closed {
				want[name] = true
			}
			for name, c := range conns {
				if c.closed.Load() != want[name] {
					t.Errorf("%s closed: %v, want %v", name, c.closed.Load(), want[name])
				}
			}
			if b.open() > tt.max {
				t.Errorf("%d open, over the budget of %d", b.open(), tt.max)
			}
			if len(tt.closed) > 0 && logs.String() == "" {
				t.Error("shedding was not logged")
			}
		})
	}
}

func TestConnBudgetWarnsAtMostOnceAMinute(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	logs := &asynctest.LogBuffer{}
	b := newConnBudget(1, slog.New(slog.NewJSONHandler(logs, nil)))
	b.now = func() time.Time { return now }
	b.track(&fakeConn{}, http.StateActive) // untracked: ignored
	first := &fakeConn{}
	b.track(first, http.StateNew)
	b.track(first, http.StateActive)
	for range 100 {
		b.track(&fakeConn{}, http.StateNew)
		now = now.Add(time.Second)
	}
	if n := strings.Count(logs.String(), "too many open connections"); n != 2 {
		t.Errorf("%d warnings over 100s, want 2:\n%s", n, logs)
	}
}

func TestConnBudgetFor(t *testing.T) {
	if got := connBudgetFor(5); got != 5 {
		t.Errorf("5: %d", got)
	}
	if got := connBudgetFor(-1); got != 0 {
		t.Errorf("-1: %d, want none", got)
	}
	soft, ok := descriptorLimit()
	if !ok {
		t.Skip("no descriptor limit here")
	}
	got := connBudgetFor(0)
	if got >= soft || got < soft-max(soft/10, minReserve) || got < 1 {
		t.Errorf("0 with a soft limit of %d: %d", soft, got)
	}
}
