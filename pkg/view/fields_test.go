package view

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

var lean = Query{Fields: fieldID | fieldAddress | fieldPort | fieldTags}

func heartbeat(v *View, in registry.Instance, now time.Time) {
	v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: in.Service, Instance: in.Renewed(now, ""), Index: 1})
}

func same(a, b Answer) bool { return &a.Body[0] == &b.Body[0] }

func answerIDs(t *testing.T, a Answer) []string {
	t.Helper()
	var body struct{ Instances []map[string]any }
	if err := json.Unmarshal(a.Body, &body); err != nil {
		t.Fatalf("decode %s: %v", a.Body, err)
	}
	var out []string
	for _, in := range body.Instances {
		out = append(out, in["id"].(string))
	}
	return out
}

// A big lean answer that shows no deadline is not encoded again when only
// heartbeats moved deadlines, not even once the deadlines it was made
// with have passed; it is when an instance in it expires, or comes back.
// The full form is encoded again renewSlack after the heartbeats.
func TestLeanAnswerIgnoresHeartbeatsButNotExpiry(t *testing.T) {
	v, clock := newView(t)
	var all []registry.Instance
	for i := range bigAnswer + 200 {
		in := inst("big", fmt.Sprintf("i-%04d", i), time.Minute, registry.StatusPassing, []string{"v1"}, map[string]string{"zone": "a"})
		all = append(all, in)
		v.Apply(registered(in, uint64(i+1)))
	}
	const quiet = "i-0007" // the one instance that stops heartbeating
	renewAll := func(except string) {
		for _, in := range all {
			if in.ID != except {
				heartbeat(v, in, clock.Now())
			}
		}
	}

	first := v.LookupAnswer("big", lean)
	full := v.LookupAnswer("big", Query{})
	clock.Advance(30 * time.Second)
	renewAll(quiet)
	clock.Advance(2 * renewSlack)
	if again := v.LookupAnswer("big", lean); !same(again, first) {
		t.Fatal("heartbeats made the lean answer stale")
	}
	if again := v.LookupAnswer("big", Query{}); same(again, full) {
		t.Fatal("the full form kept deadlines that heartbeats had moved")
	}

	// The quiet instance's deadline passes: the lean answer leaves it out.
	clock.Advance(start.Add(time.Minute).Sub(clock.Now()))
	expired := v.LookupAnswer("big", lean)
	if same(expired, first) || slices.Contains(answerIDs(t, expired), quiet) || len(answerIDs(t, expired)) != len(all)-1 {
		t.Fatalf("after %s expired: %d instances, the same answer %v", quiet, len(answerIDs(t, expired)), same(expired, first))
	}

	// Everyone else heartbeats on, well past the deadlines the answer was
	// made with: it still holds, unencoded.
	hits := v.Stats().Hits
	for range 6 {
		clock.Advance(20 * time.Second)
		renewAll(quiet)
	}
	if again := v.LookupAnswer("big", lean); !same(again, expired) {
		t.Fatal("the lean answer was encoded again though every instance in it lives")
	}
	if v.Stats().Hits != hits+1 {
		t.Fatalf("hits %d, want %d", v.Stats().Hits, hits+1)
	}

	// The quiet instance heartbeats again (another Saga let it, say): it
	// is back in the answer at once.
	heartbeat(v, all[7], clock.Now())
	if back := v.LookupAnswer("big", lean); !slices.Contains(answerIDs(t, back), quiet) {
		t.Fatalf("%s renewed after its deadline is not in the answer", quiet)
	}
}

// The same for a small service: with no renewSlack, a heartbeat makes the
// full form stale at once, and the lean one not at all.
func TestLeanAnswerOfASmallService(t *testing.T) {
	v, clock := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, []string{"v1"}, nil)
	v.Apply(registered(a, 1))
	leanFirst, full := v.LookupAnswer("web", lean), v.LookupAnswer("web", Query{})
	clock.Advance(time.Second)
	heartbeat(v, a, clock.Now())
	if !same(v.LookupAnswer("web", lean), leanFirst) || same(v.LookupAnswer("web", Query{}), full) {
		t.Fatal("a heartbeat staled the lean answer, or left the full one")
	}
	// A lean answer that shows expires_at is as stale as the full one.
	withDeadline := Query{Fields: fieldID | fieldExpiresAt}
	before := v.LookupAnswer("web", withDeadline)
	clock.Advance(time.Second)
	heartbeat(v, a, clock.Now())
	if same(v.LookupAnswer("web", withDeadline), before) {
		t.Fatal("an answer with expires_at kept a deadline a heartbeat had moved")
	}
	// Any other change makes it stale.
	v.Apply(registered(inst("web", "b", time.Minute, registry.StatusPassing, nil, nil), 2))
	if got := answerIDs(t, v.LookupAnswer("web", lean)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after a registration: %v", got)
	}
}

// Check results stale the answers that show checks, and only those.
func TestCheckResultsStaleOnlyAnswersWithChecks(t *testing.T) {
	v, _ := newView(t)
	a := inst("web", "a", time.Minute, registry.StatusPassing, nil, nil)
	a.Checks = []registry.Check{{HTTP: "/healthz", Interval: "10s"}}
	v.Apply(registered(a, 1))
	checks := Query{Fields: fieldID | fieldChecks}
	withChecks, without := v.LookupAnswer("web", checks), v.LookupAnswer("web", lean)
	v.SetCheckResults("web", "a", a.RegisteredAt, []registry.Check{{HTTP: "/healthz", Interval: "10s", Status: registry.StatusCritical, Output: "503"}})
	if same(v.LookupAnswer("web", checks), withChecks) {
		t.Fatal("a new check result left the answer that shows checks")
	}
	if !same(v.LookupAnswer("web", lean), without) {
		t.Fatal("a new check result staled an answer without checks")
	}
}

// Each set of fields has its own cache entry; the set of every key is the
// full form's.
func TestFieldsHaveTheirOwnCacheEntries(t *testing.T) {
	v, _ := newView(t)
	v.Apply(registered(inst("web", "a", time.Minute, registry.StatusPassing, []string{"v1"}, nil), 1))
	full := v.LookupAnswer("web", Query{})
	l := v.LookupAnswer("web", lean)
	ids := v.LookupAnswer("web", Query{Fields: fieldID})
	every := v.LookupAnswer("web", Query{Fields: allFields})
	if same(full, l) || same(l, ids) || !same(every, full) {
		t.Fatal("field sets share cache entries they should not, or the full form is cached twice")
	}
	if want := `{"service":"web","index":1,"instances":[{"id":"a"}]}` + "\n"; string(ids.Body) != want {
		t.Fatalf("ids answer %s, want %s", ids.Body, want)
	}
	if s := v.Stats(); s.Misses != 3 || s.Hits != 1 {
		t.Fatalf("hits/misses %d/%d, want 1/3", s.Hits, s.Misses)
	}
}
