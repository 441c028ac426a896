package registry_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

var start = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

func TestNewInstanceTTL(t *testing.T) {
	tests := []struct {
		name       string
		ttlSeconds int
		defaultTTL time.Duration
		want       time.Duration
	}{
		{"own TTL", 10, time.Minute, 10 * time.Second},
		{"default TTL", 0, time.Minute, time.Minute},
		{"default cut to whole seconds", 0, 1500 * time.Millisecond, time.Second},
		{"default below the minimum", 0, 0, time.Second},
		{"default above the maximum", 0, 48 * time.Hour, 24 * time.Hour},
		{"longest TTL", registry.MaxTTLSeconds, time.Minute, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := registry.NewManualClock(start)
			clock.Advance(90 * time.Second)
			now := clock.Now()
			in := registry.NewInstance("web", registry.Registration{ID: "a", Address: "10.0.0.1", Port: 80, TTLSeconds: tt.ttlSeconds}, now, tt.defaultTTL)
			if in.TTL() != tt.want {
				t.Errorf("TTL %v, want %v", in.TTL(), tt.want)
			}
			if !in.RegisteredAt.Equal(now) || !in.LastHeartbeat.Equal(now) {
				t.Errorf("registered_at %v, last_heartbeat %v, want both %v", in.RegisteredAt, in.LastHeartbeat, now)
			}
			if want := now.Add(tt.want); !in.ExpiresAt.Equal(want) {
				t.Errorf("expires_at %v, want %v", in.ExpiresAt, want)
			}
			if in.Status != registry.StatusPassing {
				t.Errorf("status %q, want passing", in.Status)
			}
		})
	}
}

func TestNewInstanceDefaults(t *testing.T) {
	local := time.FixedZone("UTC+5", 5*3600)
	r := registry.Registration{Address: "10.0.0.1", Port: 80}
	in := registry.NewInstance("web", r, start.In(local), time.Minute)
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(in.ID) {
		t.Errorf("generated id %q, want 16 lowercase hex digits", in.ID)
	}
	if err := registry.ValidateName("id", in.ID); err != nil {
		t.Errorf("generated id is invalid: %v", err)
	}
	if other := registry.NewInstance("web", r, start, time.Minute); other.ID == in.ID {
		t.Errorf("two generated ids are both %q", in.ID)
	}
	for name, tm := range map[string]time.Time{"registered_at": in.RegisteredAt, "last_heartbeat": in.LastHeartbeat, "expires_at": in.ExpiresAt} {
		if tm.Location() != time.UTC {
			t.Errorf("%s in %v, want UTC", name, tm.Location())
		}
	}
	if in.Tags == nil || in.Metadata == nil {
		t.Errorf("tags %#v, metadata %#v: want empty, not nil (JSON [] and {})", in.Tags, in.Metadata)
	}
	if in.Service != "web" {
		t.Errorf("service %q, want web", in.Service)
	}
}

func TestNewInstanceDoesNotShareInput(t *testing.T) {
	r := registry.Registration{ID: "a", Address: "10.0.0.1", Port: 80, Tags: []string{"x"}, Metadata: map[string]string{"k": "v"}}
	in := registry.NewInstance("web", r, start, time.Minute)
	r.Tags[0], r.Metadata["k"] = "changed", "changed"
	if in.Tags[0] != "x" || in.Metadata["k"] != "v" {
		t.Errorf("instance follows the registration it came from: %v %v", in.Tags, in.Metadata)
	}
}

func TestLive(t *testing.T) {
	in := registry.NewInstance("web", registry.Registration{ID: "a", Address: "10.0.0.1", Port: 80, TTLSeconds: 10}, start, time.Minute)
	clock := registry.NewManualClock(start)
	tests := []struct {
		advance time.Duration
		live    bool
	}{
		{0, true},
		{10*time.Second - time.Nanosecond, true},
		{time.Nanosecond, false}, // the deadline itself: dead from that instant on
		{time.Hour, false},
	}
	for _, tt := range tests {
		clock.Advance(tt.advance)
		if got := in.Live(clock.Now()); got != tt.live {
			t.Errorf("Live at %v = %v, want %v (deadline %v)", clock.Now(), got, tt.live, in.ExpiresAt)
		}
	}
}

func TestRenewed(t *testing.T) {
	in := registry.NewInstance("web", registry.Registration{ID: "a", Address: "10.0.0.1", Port: 80, TTLSeconds: 10, Tags: []string{"x"}, Metadata: map[string]string{"k": "v"}}, start, time.Minute)
	clock := registry.NewManualClock(start)
	clock.Advance(7 * time.Second)
	now := clock.Now()

	tests := []struct {
		status registry.Status
		want   registry.Status
	}{
		{"", registry.StatusPassing},
		{registry.StatusWarning, registry.StatusWarning},
		{registry.StatusCritical, registry.StatusCritical},
	}
	for _, tt := range tests {
		got := in.Renewed(now, tt.status)
		if got.Status != tt.want {
			t.Errorf("Renewed(%q): status %q, want %q", tt.status, got.Status, tt.want)
		}
		if !got.LastHeartbeat.Equal(now) || !got.ExpiresAt.Equal(now.Add(10*time.Second)) {
			t.Errorf("Renewed(%q): last_heartbeat %v, expires_at %v; want %v and %v", tt.status, got.LastHeartbeat, got.ExpiresAt, now, now.Add(10*time.Second))
		}
		if !got.RegisteredAt.Equal(in.RegisteredAt) {
			t.Errorf("Renewed moved registered_at to %v", got.RegisteredAt)
		}
		got.Tags[0], got.Metadata["k"] = "changed", "changed"
		if in.Tags[0] != "x" || in.Metadata["k"] != "v" {
			t.Fatalf("Renewed shares tags or metadata with the original")
		}
	}
	if in.Status != registry.StatusPassing || !in.ExpiresAt.Equal(start.Add(10*time.Second)) {
		t.Errorf("Renewed changed the original: %+v", in)
	}
}

func TestManualClock(t *testing.T) {
	clock := registry.NewManualClock(start.In(time.FixedZone("x", 3600)))
	if got := clock.Now(); !got.Equal(start) || got.Location() != time.UTC {
		t.Errorf("Now = %v, want %v in UTC", got, start)
	}
	clock.Advance(1500 * time.Millisecond)
	if got, want := clock.Now(), start.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Errorf("after Advance: %v, want %v", got, want)
	}
}

func TestEventTypePublic(t *testing.T) {
	public := map[registry.EventType]bool{
		registry.EventRegistered:   true,
		registry.EventUpdated:      true,
		registry.EventDeregistered: true,
		registry.EventExpired:      true,
		registry.EventHeartbeat:    false,
		registry.EventResync:       false,
	}
	for typ, want := range public {
		if got := typ.Public(); got != want {
			t.Errorf("%s.Public() = %v, want %v", typ, got, want)
		}
	}
}
