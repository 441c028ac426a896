package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// The robustness checker on hand-made histories: one that obeys the model
// passes, and one that breaks each rule is reported under that rule.

// checkerT0 is the start of every hand-made history.
var checkerT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// at is a moment of a hand-made history, in seconds from its start.
func at(seconds float64) time.Time {
	return checkerT0.Add(time.Duration(seconds * float64(time.Second)))
}

// goodHistory is two sagas on one store. Client c1 registers x through A
// and later deregisters it through A; client c2 registers y through B and
// keeps it. Reads through both sagas, each stream's events and the final
// state all agree with that.
func goodHistory() *history {
	write := func(kind opKind, client, saga, id string, start, end float64, status int) op {
		return op{Client: client, Saga: saga, Kind: kind, Service: "s", ID: id, Start: at(start), End: at(end), Status: status}
	}
	lookup := func(client, saga string, start, end float64, index uint64, ids ...string) op {
		return op{Client: client, Saga: saga, Kind: opLookup, Service: "s", Start: at(start), End: at(end), Status: 200, Index: index, IDs: ids}
	}
	get := func(client, saga, id string, start, end float64, status int, index uint64) op {
		return op{Client: client, Saga: saga, Kind: opGet, Service: "s", ID: id, Start: at(start), End: at(end), Status: status, Index: index}
	}
	events := []streamEvent{
		{Type: "registered", Service: "s", ID: "x", Index: 1},
		{Type: "registered", Service: "s", ID: "y", Index: 2},
		{Type: "deregistered", Service: "s", ID: "x", Index: 3},
	}
	return &history{
		Start:    checkerT0,
		Sagas:    []string{"A", "B"},
		Services: []string{"s"},
		Ops: []op{
			lookup("r", "B", 0, 0.05, 0),                   // before anything
			write(opRegister, "c1", "A", "x", 0, 0.1, 201), // index 1
			get("c1", "A", "x", 0.2, 0.21, 200, 1),         // read-your-writes
			lookup("c1", "A", 0.22, 0.23, 1, "x"),
			lookup("r", "B", 0.3, 0.31, 0),                   // B may lag for a second
			write(opRegister, "c2", "B", "y", 0.4, 0.5, 201), // index 2
			lookup("r", "A", 0.45, 0.6, 1, "x"),              // y in flight: either way
			lookup("r", "B", 1.2, 1.21, 2, "x", "y"),         // agreement within 1 s
			write(opDeregister, "c1", "A", "x", 2, 2.1, 204),
			get("c1", "A", "x", 2.2, 2.21, 404, 0),
			lookup("r", "B", 2.5, 2.51, 2, "x", "y"), // stale, but within 1 s
			lookup("r", "B", 3.2, 3.21, 3, "y"),
			{Client: "blocker-A", Saga: "A", Kind: opBlocking, Service: "s", Start: at(2.05), End: at(2.11), Status: 200, AskedIndex: 2, Index: 3, IDs: []string{"y"}},
		},
		Streams: []stream{
			{Saga: "A", Events: slices.Clone(events)},
			{Saga: "B", Events: slices.Clone(events)},
		},
		Final: []op{
			{Client: "final", Saga: "A", Kind: opLookup, Service: "s", Start: at(4), End: at(4.01), Status: 200, Index: 3, IDs: []string{"y"}},
			{Client: "final", Saga: "B", Kind: opLookup, Service: "s", Start: at(4), End: at(4.01), Status: 200, Index: 3, IDs: []string{"y"}},
			{Client: "final", Saga: "A", Kind: opBlocking, Service: "s", Start: at(4), End: at(5), Status: 200, AskedIndex: 3, Index: 3, IDs: []string{"y"}},
			{Client: "final", Saga: "B", Kind: opBlocking, Service: "s", Start: at(4), End: at(5), Status: 200, AskedIndex: 3, Index: 3, IDs: []string{"y"}},
		},
		Store: map[string]storeState{"s": {IDs: []string{"y"}, Index: 3}},
	}
}

// findOp returns the recorded op by client, saga, kind and start.
func findOp(t *testing.T, h *history, client, saga string, kind opKind, start float64) *op {
	t.Helper()
	for i := range h.Ops {
		o := &h.Ops[i]
		if o.Client == client && o.Saga == saga && o.Kind == kind && o.Start.Equal(at(start)) {
			return o
		}
	}
	t.Fatalf("no %s by %s on %s at %gs in the history", kind, client, saga, start)
	return nil
}

func TestRobustnessCheckerPassesAGoodHistory(t *testing.T) {
	if vs := checkHistory(goodHistory(), agreeWithin); len(vs) > 0 {
		t.Errorf("a history that obeys the model: %s", describeViolations(goodHistory(), vs, 20))
	}
	// Without the store's own state (the embedded store), the model
	// stands for it.
	h := goodHistory()
	h.Store = nil
	if vs := checkHistory(h, agreeWithin); len(vs) > 0 {
		t.Errorf("without the store's state: %s", describeViolations(h, vs, 20))
	}
}

func TestRobustnessCheckerReportsEachRule(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, h *history)
		want   map[string]int // violations by rule
	}{
		{
			name: "the writer's saga loses its own registration",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "c1", "A", opGet, 0.2).Status = 404
			},
			want: map[string]int{"read-your-writes": 1},
		},
		{
			name: "a lookup on the writer's saga misses the registration",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "c1", "A", opLookup, 0.22).IDs = nil
			},
			want: map[string]int{"read-your-writes": 1},
		},
		{
			name: "the writer's saga still shows a deregistered instance",
			mutate: func(t *testing.T, h *history) {
				o := findOp(t, h, "c1", "A", opGet, 2.2)
				o.Status, o.Index = 200, 3
			},
			want: map[string]int{"read-your-writes": 1},
		},
		{
			name: "another saga still lacks a registration after a second",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "r", "B", opLookup, 1.2).IDs = []string{"y"}
			},
			want: map[string]int{"agreement": 1},
		},
		{
			name: "another saga still shows a deregistered instance after a second",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "r", "B", opLookup, 3.2).IDs = []string{"x", "y"}
			},
			want: map[string]int{"agreement": 1},
		},
		{
			name: "an instance shown before it was registered",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "r", "B", opLookup, 0).IDs = []string{"y"}
			},
			want: map[string]int{"no-phantom": 1},
		},
		{
			name: "an instance nobody wrote",
			mutate: func(t *testing.T, h *history) {
				o := findOp(t, h, "r", "B", opLookup, 3.2)
				o.IDs = append(o.IDs, "ghost")
			},
			want: map[string]int{"no-phantom": 1},
		},
		{
			name: "an index going back on one saga",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "r", "B", opLookup, 2.5).Index = 1
			},
			want: map[string]int{"monotonic-index": 1},
		},
		{
			name: "a registration missing from a stream",
			mutate: func(t *testing.T, h *history) {
				h.Streams[1].Events = slices.Delete(h.Streams[1].Events, 0, 1)
			},
			want: map[string]int{"events": 1},
		},
		{
			name: "a deregistration seen twice",
			mutate: func(t *testing.T, h *history) {
				h.Streams[0].Events = append(h.Streams[0].Events, streamEvent{Type: "deregistered", Service: "s", ID: "x", Index: 4})
			},
			want: map[string]int{"events": 1},
		},
		{
			name: "an event without a write",
			mutate: func(t *testing.T, h *history) {
				h.Streams[0].Events = append(h.Streams[0].Events, streamEvent{Type: "expired", Service: "s", ID: "y", Index: 4})
			},
			want: map[string]int{"events": 1},
		},
		{
			name: "a stream that ended early",
			mutate: func(t *testing.T, h *history) {
				h.Streams[1].Ended = true
			},
			want: map[string]int{"events": 1},
		},
		{
			name: "events out of index order",
			mutate: func(t *testing.T, h *history) {
				ev := h.Streams[0].Events
				ev[0], ev[1] = ev[1], ev[0]
			},
			want: map[string]int{"event-order": 1},
		},
		{
			name: "sagas numbering one change differently",
			mutate: func(t *testing.T, h *history) {
				h.Streams[1].Events[2].Index = 4
			},
			want: map[string]int{"event-index": 1},
		},
		{
			name: "a saga's final lookup keeps a deregistered instance",
			mutate: func(t *testing.T, h *history) {
				h.Final[1].IDs = []string{"x", "y"}
			},
			want: map[string]int{"final-state": 1},
		},
		{
			name: "a saga's final index differs from the store's",
			mutate: func(t *testing.T, h *history) {
				h.Final[0].Index = 2
			},
			want: map[string]int{"final-index": 1},
		},
		{
			name: "a final blocking lookup misses an instance",
			mutate: func(t *testing.T, h *history) {
				h.Final[3].IDs = nil
			},
			want: map[string]int{"final-blocking": 1},
		},
		{
			name: "the store lost an acknowledged registration",
			mutate: func(t *testing.T, h *history) {
				h.Store["s"] = storeState{Index: 3}
				for i := range h.Final {
					h.Final[i].IDs = nil
				}
			},
			want: map[string]int{"store": 1},
		},
		{
			name: "the store's index does not count the changes",
			mutate: func(t *testing.T, h *history) {
				h.Store["s"] = storeState{IDs: []string{"y"}, Index: 7}
			},
			want: map[string]int{"store": 1, "final-index": 2, "final-blocking": 2},
		},
		{
			name: "a failed read",
			mutate: func(t *testing.T, h *history) {
				findOp(t, h, "r", "B", opLookup, 1.2).Status = 500
			},
			want: map[string]int{"request-failed": 1},
		},
		{
			name: "a write of unknown outcome leaves its id out of the other rules",
			mutate: func(t *testing.T, h *history) {
				w := findOp(t, h, "c1", "A", opDeregister, 2)
				w.Status, w.Err = 0, "connection reset"
				// Whatever the saga and the store then show of x is allowed.
				findOp(t, h, "r", "B", opLookup, 3.2).IDs = []string{"x", "y"}
				h.Streams[1].Events = h.Streams[1].Events[:2]
				h.Store["s"] = storeState{IDs: []string{"x", "y"}, Index: 2}
				for i := range h.Final {
					h.Final[i].IDs, h.Final[i].Index = []string{"x", "y"}, 2
				}
			},
			want: map[string]int{"request-failed": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := goodHistory()
			tt.mutate(t, h)
			vs := checkHistory(h, agreeWithin)
			got := map[string]int{}
			for _, v := range vs {
				got[v.Rule]++
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("violations by rule %v, want %v; %s", got, tt.want, describeViolations(h, vs, 20))
			}
			// The report names each rule it counts.
			report := describeViolations(h, vs, 20)
			for rule := range tt.want {
				if !strings.Contains(report, rule) {
					t.Errorf("the report does not name %s:\n%s", rule, report)
				}
			}
		})
	}
}
