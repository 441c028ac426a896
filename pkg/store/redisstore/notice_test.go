package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// The short heartbeat notice decodes as encoding/json decodes it, and
// anything not in its exact form is left to encoding/json.
func TestParseShortHeartbeat(t *testing.T) {
	const short = `{"origin":"3f9c0a1b2d4e5f60","service":"web","type":"heartbeat","id":"a1","index":7,"rev":5,"status":"passing","heartbeat":1764115210000,"expires":1764115240000}`
	tests := []struct {
		name string
		data string
		ok   bool
	}{
		{"short", short, true},
		{"zeros", strings.NewReplacer(`"index":7`, `"index":0`, `"rev":5`, `"rev":0`).Replace(short), true},
		{"dots and dashes", strings.Replace(short, `"id":"a1"`, `"id":"a-1.b_2"`, 1), true},
		{"escaped id", strings.Replace(short, `"id":"a1"`, `"id":"a\/1"`, 1), false},
		{"with record", strings.Replace(short, `"rev":5,`, `"rev":5,"record":{"address":"10.0.0.7","port":80,"tags":[],"metadata":{},"ttl_seconds":30,"registered_at":1},`, 1), false},
		{"another type", strings.Replace(short, `"heartbeat","id"`, `"updated","id"`, 1), false},
		{"fields reordered", strings.Replace(short, `"index":7,"rev":5`, `"rev":5,"index":7`, 1), false},
		{"negative", strings.Replace(short, `"expires":1764115240000`, `"expires":-1`, 1), false},
		{"fraction", strings.Replace(short, `"index":7`, `"index":7.5`, 1), false},
		{"overflow", strings.Replace(short, `"index":7`, `"index":99999999999999999999`, 1), false},
		{"trailing", short + " ", false},
		{"cut short", short[:len(short)-1], false},
		{"unterminated", `{"origin":"3f9c`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseShortHeartbeat(tt.data)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			var want notice
			if err := json.Unmarshal([]byte(tt.data), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parsed %+v, encoding/json %+v", got, want)
			}
		})
	}
}

// replyLog keeps the text of every script reply a client receives.
type replyLog struct {
	mu      sync.Mutex
	replies []string
}

func (l *replyLog) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (l *replyLog) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*goredis.Cmd); ok && strings.HasPrefix(cmd.Name(), "eval") {
			// A script answers one notice, or the heartbeat script one per instance.
			l.mu.Lock()
			switch v := c.Val().(type) {
			case string:
				l.replies = append(l.replies, v)
			case []any:
				for _, item := range v {
					if s, ok := item.(string); ok {
						l.replies = append(l.replies, s)
					}
				}
			}
			l.mu.Unlock()
		}
		return err
	}
}

func (l *replyLog) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

func (l *replyLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	replies := l.replies
	l.replies = nil
	return replies
}

// nextEvent returns the first event on changes that match accepts.
func nextEvent(t *testing.T, changes <-chan registry.Event, match func(registry.Event) bool) registry.Event {
	t.Helper()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case ev := <-changes:
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no matching event within 2s")
		}
	}
}

func heartbeatOf(id string) func(registry.Event) bool {
	return func(ev registry.Event) bool { return ev.Type == registry.EventHeartbeat && ev.Instance.ID == id }
}

// sameInstance fails unless got is want in every field.
func sameInstance(t *testing.T, what string, got, want registry.Instance) {
	t.Helper()
	if !reflect.DeepEqual(got, want.Clone()) {
		t.Errorf("%s: instance\n%+v\nwant\n%+v", what, got, want)
	}
}

// waitForRecord waits until s holds a record of service/id other than
// the one of rev not, and returns its rev.
func waitForRecord(t *testing.T, s *Store, service, id string, not uint64) uint64 {
	t.Helper()
	var rev uint64
	asynctest.Eventually(t, 2*time.Second, "the store caches a record of "+service+"/"+id, func() error {
		if rev = s.records.lookup(service, id).rev; rev == 0 || rev == not {
			return fmt.Errorf("cached rev %d", rev)
		}
		return nil
	})
	return rev
}

// A plain heartbeat's notice leaves out the record, which every process
// already holds; the caller and the other processes still get the whole
// instance in their events, also when the record they held is outdated.
func TestHeartbeatNoticeLeavesOutRecord(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := openInternal(t, srv.URL())
	b := openInternal(t, srv.URL())
	raw := srv.Client().Subscribe(t.Context(), changeChannel)
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Receive(t.Context()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)

	reg, err := a.Register(t.Context(), registrytest.Instance("web", "a", 30, t0))
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := raw.ReceiveMessage(t.Context()); err != nil || !strings.Contains(msg.Payload, `"record":{`) {
		t.Fatalf("register notice %v, %v; want one with the record", msg, err)
	}
	rev := waitForRecord(t, b, "web", "a", 0)
	if held := a.records.lookup("web", "a").rev; held != rev {
		t.Fatalf("the two processes hold revs %d and %d of one registration", held, rev)
	}

	replies := &replyLog{}
	a.client.AddHook(replies)
	now := t0.Add(time.Second)
	ev, err := a.Heartbeat(t.Context(), "web", "a", "", now)
	if err != nil {
		t.Fatal(err)
	}
	want := reg.Instance.Renewed(now, "")
	sameInstance(t, "caller's event", ev.Instance, want)
	if ev.Type != registry.EventHeartbeat || ev.Index != reg.Index {
		t.Errorf("caller's event %s at %d, want heartbeat at %d", ev.Type, ev.Index, reg.Index)
	}
	if got := replies.take(); len(got) != 1 || strings.Contains(got[0], "record") {
		t.Errorf("heartbeat answered %q, want one notice without the record", got)
	}
	msg, err := raw.ReceiveMessage(t.Context())
	if err != nil || strings.Contains(msg.Payload, "record") || !strings.Contains(msg.Payload, `"rev":`) {
		t.Fatalf("heartbeat notice %v, %v; want one with a rev and without the record", msg, err)
	}
	sameInstance(t, "other process's event", nextEvent(t, b.Changes(), heartbeatOf("a")).Instance, want)

	// b registers the instance again, somewhere else; a's copy of the
	// record is made stale on purpose (as if b's notice were still on its
	// way): a's next heartbeat gets the new record from Redis.
	moved := registrytest.Instance("web", "a", 30, now)
	moved.Address, moved.Tags = "10.0.0.8", []string{"green"}
	rereg, err := b.Register(t.Context(), moved)
	if err != nil {
		t.Fatal(err)
	}
	newRev := waitForRecord(t, a, "web", "a", rev)
	a.records.store("web", "a", cachedRecord{rev: rev, rec: record{Address: reg.Instance.Address, Port: reg.Instance.Port, TTLSeconds: 30}})
	now = now.Add(time.Second)
	ev, err = a.Heartbeat(t.Context(), "web", "a", "", now)
	if err != nil {
		t.Fatal(err)
	}
	sameInstance(t, "event after a stale record", ev.Instance, rereg.Instance.Renewed(now, ""))
	if got := replies.take(); len(got) != 1 || !strings.Contains(got[0], `"address":"10.0.0.8"`) {
		t.Errorf("heartbeat with a stale record answered %q, want the new record", got)
	}
	if got := a.records.lookup("web", "a"); got.rev != newRev || got.rec.Address != "10.0.0.8" {
		t.Errorf("a caches rev %d at %s, want rev %d at 10.0.0.8", got.rev, got.rec.Address, newRev)
	}
}

// A process that gets a heartbeat notice for a record it does not hold
// (it started after the registration) reads the record once, off the
// heartbeat's path, and delivers whole heartbeat events.
func TestHeartbeatOfUnknownRecordFetchesIt(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	reg, err := a.Register(t.Context(), registrytest.Instance("web", "a", 30, t0))
	if err != nil {
		t.Fatal(err)
	}
	late := openInternal(t, srv.URL()) // opened after the registration: never heard of it
	log := &commandLog{}
	late.client.AddHook(log)

	for i := range 3 {
		now := t0.Add(time.Duration(i+1) * time.Second)
		if _, err := a.Heartbeat(t.Context(), "web", "a", "", now); err != nil {
			t.Fatal(err)
		}
		ev := nextEvent(t, late.Changes(), func(ev registry.Event) bool {
			if ev.Type == registry.EventResync {
				t.Errorf("resync instead of reading the record")
			}
			return ev.Type == registry.EventHeartbeat
		})
		sameInstance(t, "late process's event", ev.Instance, reg.Instance.Renewed(now, ""))
	}
	// One read: an EVALSHA that Redis answers NOSCRIPT, as the script is new
	// to it, and the EVAL that loads it.
	if trips := strings.Join(log.take(), " "); trips != "evalsha eval" {
		t.Errorf("late process sent %q for three heartbeats, want one read of the record", trips)
	}

	// A notice outdated by the time the record is read is dropped: the
	// instance has gone, or holds another registration.
	n := notice{Service: "web", ID: "a", Rev: 1}
	if _, ok, err := late.fetchRecord(t.Context(), n); ok || err != nil {
		t.Errorf("fetchRecord of another rev = %v, %v; want not ok", ok, err)
	}
	n.ID = "gone"
	if _, ok, err := late.fetchRecord(t.Context(), n); ok || err != nil {
		t.Errorf("fetchRecord of a missing instance = %v, %v; want not ok", ok, err)
	}

	// A token notice is told apart before decoding: the late process
	// signals TokenChanges, reads nothing and sends no event.
	log.take()
	authtest.Drain(late)
	if err := a.CreateToken(t.Context(), authtest.Token(t, "notice")); err != nil {
		t.Fatal(err)
	}
	authtest.WaitChange(t, late, time.Second, "the late process, after a token write")
	select {
	case ev := <-late.Changes():
		t.Errorf("a token notice sent %+v on Changes", ev)
	case <-time.After(100 * time.Millisecond):
	}
	if trips := log.take(); len(trips) != 0 {
		t.Errorf("a token notice made the late process send %q", trips)
	}
}

// State written before revs existed ("status ttl last_heartbeat") still
// works: its heartbeats send the whole notice, and every script reads it.
func TestStateWithoutRev(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := openInternal(t, srv.URL())
	b := openInternal(t, srv.URL())
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	reg, err := a.Register(t.Context(), registrytest.Instance("web", "old", 30, t0))
	if err != nil {
		t.Fatal(err)
	}
	legacy := fmtState("passing", 30, t0)
	if err := srv.Client().HSet(t.Context(), "service:{web}:state", "old", legacy).Err(); err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, b, "web", "old", 0)

	now := t0.Add(time.Second)
	ev, err := a.Heartbeat(t.Context(), "web", "old", "", now)
	if err != nil {
		t.Fatal(err)
	}
	want := reg.Instance.Renewed(now, "")
	sameInstance(t, "heartbeat", ev.Instance, want)
	sameInstance(t, "other process's heartbeat", nextEvent(t, b.Changes(), heartbeatOf("old")).Instance, want)

	if err := srv.Client().HSet(t.Context(), "service:{web}:state", "old", legacy).Err(); err != nil {
		t.Fatal(err)
	}
	snap, err := a.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Services["web"].Instances; len(got) != 1 || got[0].Address != want.Address {
		t.Errorf("snapshot %+v, want web/old", got)
	}
	if ev, err := a.Deregister(t.Context(), "web", "old"); err != nil || ev.Instance.Address != want.Address {
		t.Errorf("Deregister = %+v, %v", ev, err)
	}
}

func fmtState(status string, ttl int, hb time.Time) string {
	return status + " " + strconv.Itoa(ttl) + " " + strconv.FormatInt(millis(hb), 10)
}

// A plain heartbeat leaves the state hash alone: every script reads the
// last heartbeat from the deadline instead. A grace, which moves the
// deadline without a heartbeat, keeps the last heartbeat in the state. An
// earlier release, which reads the last heartbeat from the state, reads
// one at most a TTL old.
func TestPlainHeartbeatLeavesStateAlone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, srv.URL())
	t0 := registrytest.T0
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 30, t0)); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		v, err := srv.Client().HGet(t.Context(), "service:{web}:state", "a").Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// earlierRelease reads the last heartbeat as the scripts of a release
	// before this one do.
	earlierRelease := regexp.MustCompile(`^(\S+) (\d+) (\d+) ?(\d*)$`)
	readByEarlierRelease := func() time.Time {
		t.Helper()
		m := earlierRelease.FindStringSubmatch(state())
		if m == nil {
			t.Fatalf("state %q does not read as an earlier release reads it", state())
		}
		ms, _ := strconv.ParseInt(m[3], 10, 64)
		return fromMillis(ms)
	}
	beat := func(at time.Time) {
		t.Helper()
		if _, err := s.Heartbeat(t.Context(), "web", "a", "", at); err != nil {
			t.Fatal(err)
		}
	}
	wantTimes := func(when string, lastHeartbeat, expires time.Time) {
		t.Helper()
		snap, err := s.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got := snap.Services["web"].Instances
		if len(got) != 1 || !got[0].LastHeartbeat.Equal(lastHeartbeat) || !got[0].ExpiresAt.Equal(expires) {
			t.Errorf("%s: snapshot %+v, want last heartbeat %v, deadline %v", when, got, lastHeartbeat, expires)
		}
	}

	beat(t0.Add(time.Second))
	written := state()
	beat(t0.Add(2 * time.Second))
	if got := state(); got != written {
		t.Errorf("a plain heartbeat wrote the state: %q, then %q", written, got)
	}
	wantTimes("after heartbeats", t0.Add(2*time.Second), t0.Add(32*time.Second))
	if got := readByEarlierRelease(); got.Before(t0.Add(2 * time.Second).Add(-30 * time.Second)) {
		t.Errorf("an earlier release reads the last heartbeat %v, more than a TTL before %v", got, t0.Add(2*time.Second))
	}
	beat(t0.Add(31 * time.Second))
	if got := readByEarlierRelease(); !got.Equal(t0.Add(31 * time.Second)) {
		t.Errorf("a heartbeat a TTL after the state was written left an earlier release reading %v", got)
	}

	if err := s.GrantGrace(t.Context(), t0.Add(70*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantTimes("after a grace", t0.Add(31*time.Second), t0.Add(100*time.Second))
	beat(t0.Add(71 * time.Second))
	wantTimes("after a grace and a heartbeat", t0.Add(71*time.Second), t0.Add(101*time.Second))
	ev, err := s.Deregister(t.Context(), "web", "a")
	if err != nil || !ev.Instance.LastHeartbeat.Equal(t0.Add(71*time.Second)) {
		t.Errorf("Deregister = %+v, %v; want last heartbeat %v", ev, err, t0.Add(71*time.Second))
	}
}
