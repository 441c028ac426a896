package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

var limitsEpoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// step is one request of a client at an offset from limitsEpoch, and
// whether it is let through; over its rate, the Retry-After it is told.
type step struct {
	at      time.Duration
	key     string
	kind    string
	allowed bool
	retry   int // seconds, when refused
}

func TestClientTableRates(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{
			name:   "a burst, then one a second",
			limits: Limits{ReadRate: 1, ReadBurst: 2},
			steps: []step{
				{0, "a", "read", true, 0},
				{0, "a", "read", true, 0},
				{0, "a", "read", false, 1},
				{500 * time.Millisecond, "a", "read", false, 1}, // half a token: still 1s, rounded up
				{time.Second, "a", "read", true, 0},
				{time.Second, "a", "read", false, 1},
			},
		},
		{
			name:   "a slow rate says how long to wait",
			limits: Limits{WriteRate: 0.1, WriteBurst: 1},
			steps: []step{
				{0, "a", "write", true, 0},
				{0, "a", "write", false, 10},
				{9 * time.Second, "a", "write", false, 1},
				{10 * time.Second, "a", "write", true, 0},
			},
		},
		{
			name:   "clients and kinds have buckets of their own",
			limits: Limits{ReadRate: 1, ReadBurst: 1, WriteRate: 1, WriteBurst: 1},
			steps: []step{
				{0, "a", "read", true, 0},
				{0, "a", "read", false, 1},
				{0, "a", "write", true, 0},
				{0, "b", "read", true, 0},
				{0, "b", "write", true, 0},
			},
		},
		{
			name:   "a rate of 0 is unlimited",
			limits: Limits{ReadRate: 0, ReadBurst: 1, WriteRate: 1, WriteBurst: 1},
			steps: []step{
				{0, "a", "read", true, 0},
				{0, "a", "read", true, 0},
				{0, "a", "read", true, 0},
				{0, "a", "write", true, 0},
				{0, "a", "write", false, 1},
			},
		},
		{
			name:   "a burst of 0 is taken as 1",
			limits: Limits{ReadRate: 1},
			steps: []step{
				{0, "a", "read", true, 0},
				{0, "a", "read", false, 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := newClientTable()
			for i, s := range tt.steps {
				err := table.allow(s.key, s.kind, &tt.limits, limitsEpoch.Add(s.at))
				if (err == nil) != s.allowed {
					t.Fatalf("step %d %+v: err %v", i, s, err)
				}
				if err == nil {
					continue
				}
				var le *limitError
				if !errors.As(err, &le) || le.status != http.StatusTooManyRequests || le.code != codeRateLimited {
					t.Fatalf("step %d: %#v, want a 429 rate_limited", i, err)
				}
				if got := retryAfterSeconds(le.retryAfter); got != s.retry {
					t.Errorf("step %d: Retry-After %d, want %d", i, got, s.retry)
				}
				if want := "limits." + s.kind + "_rate"; !strings.Contains(le.message, want) {
					t.Errorf("step %d: message %q does not name %s", i, le.message, want)
				}
			}
		})
	}
}

func TestClientTableTakesANewRateFromThenOn(t *testing.T) {
	table := newClientTable()
	l := Limits{ReadRate: 1, ReadBurst: 1}
	if err := table.allow("a", "read", &l, limitsEpoch); err != nil {
		t.Fatal(err)
	}
	if err := table.allow("a", "read", &l, limitsEpoch); err == nil {
		t.Fatal("over the rate, allowed")
	}
	// SetLimits on SIGHUP: 0.1 token by the old rate, then 100 a second.
	l = Limits{ReadRate: 100, ReadBurst: 100}
	_ = table.allow("a", "read", &l, limitsEpoch.Add(100*time.Millisecond))
	if err := table.allow("a", "read", &l, limitsEpoch.Add(120*time.Millisecond)); err != nil {
		t.Fatalf("after raising the rate: %v", err)
	}
}

func TestClientTableCaps(t *testing.T) {
	tests := []struct {
		name       string
		limits     Limits
		stream     bool
		open       []string // clients that open one each, all let through
		next       string   // the client that then asks
		wantStatus int      // 0: let through
		wantKey    string
	}{
		{"per client", Limits{MaxStreamsPerClient: 2}, true, []string{"a", "a", "b"}, "a", 429, "limits.max_streams_per_client"},
		{"another client still gets in", Limits{MaxStreamsPerClient: 2}, true, []string{"a", "a"}, "b", 0, ""},
		{"in total", Limits{MaxStreams: 3, MaxStreamsPerClient: 2}, true, []string{"a", "b", "c"}, "d", 503, "limits.max_streams"},
		{"blocking per client", Limits{MaxBlockingQueriesPerClient: 1}, false, []string{"a"}, "a", 429, "limits.max_blocking_queries_per_client"},
		{"blocking in total", Limits{MaxBlockingQueries: 1}, false, []string{"a"}, "b", 503, "limits.max_blocking_queries"},
		{"streams do not count as blocking queries", Limits{MaxBlockingQueries: 1}, false, nil, "a", 0, ""},
		{"0 is unlimited", Limits{}, true, []string{"a", "a", "a", "a"}, "a", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := newClientTable()
			if tt.name == "streams do not count as blocking queries" {
				if _, err := table.acquire("a", true, &tt.limits, limitsEpoch); err != nil {
					t.Fatal(err)
				}
			}
			for _, key := range tt.open {
				if _, err := table.acquire(key, tt.stream, &tt.limits, limitsEpoch); err != nil {
					t.Fatalf("open for %s: %v", key, err)
				}
			}
			release, err := table.acquire(tt.next, tt.stream, &tt.limits, limitsEpoch)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				release()
				return
			}
			var le *limitError
			if !errors.As(err, &le) || le.status != tt.wantStatus || !strings.Contains(le.message, "("+tt.wantKey) || le.retryAfter <= 0 {
				t.Fatalf("got %#v, want %d naming %s with a Retry-After", err, tt.wantStatus, tt.wantKey)
			}
		})
	}
}

func TestClientTableReleaseFreesTheSlot(t *testing.T) {
	table := newClientTable()
	l := Limits{MaxStreamsPerClient: 1, MaxStreams: 1}
	release, err := table.acquire("a", true, &l, limitsEpoch)
	if err != nil {
		t.Fatal(err)
	}
	if b, s := table.open(); b != 0 || s != 1 {
		t.Fatalf("open %d blocking, %d streams", b, s)
	}
	if _, err := table.acquire("a", true, &l, limitsEpoch); err == nil {
		t.Fatal("second stream let through")
	}
	release()
	if _, err := table.acquire("a", true, &l, limitsEpoch); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestClientTableForgetsIdleClients(t *testing.T) {
	table := newClientTable()
	l := Limits{ReadRate: 0.1, ReadBurst: 10}
	for _, key := range []string{"a", "b", "c"} {
		if err := table.allow(key, "read", &l, limitsEpoch); err != nil {
			t.Fatal(err)
		}
	}
	release, err := table.acquire("c", true, &l, limitsEpoch)
	if err != nil {
		t.Fatal(err)
	}
	// b keeps asking, so its bucket is not full; a and c are quiet, but c
	// has a stream open.
	now := limitsEpoch
	for range 3 {
		now = now.Add(30 * time.Second)
		for range 10 {
			_ = table.allow("b", "read", &l, now)
		}
	}
	_ = table.allow("d", "read", &l, now.Add(clientSweepEvery))
	table.mu.Lock()
	_, a := table.clients["a"]
	_, b := table.clients["b"]
	_, c := table.clients["c"]
	n := len(table.clients)
	table.mu.Unlock()
	if a || !b || !c || n != 3 {
		t.Fatalf("after the sweep: a %v b %v c %v, %d clients; want a swept, b and c (and d) kept", a, b, c, n)
	}
	release()
}
