package client_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
	"github.com/sagaproject/saga/pkg/registry"
)

// These tests run the client against the real API, store and view.

func newClient(t *testing.T, opts clienttest.Options) *client.Client {
	t.Helper()
	srv := clienttest.Start(t, opts)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInstanceLifecycle(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{HeartbeatInterval: 10 * time.Second})

	reg := registry.Registration{
		ID: "web-1", Address: "10.0.0.5", Port: 8080,
		Tags: []string{"v2", "http"}, Metadata: map[string]string{"zone": "eu-1"}, TTLSeconds: 30,
	}
	got, err := c.Register(ctx, "web", reg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if !got.Created || got.HeartbeatInterval != 10*time.Second || got.Instance.ID != "web-1" || got.Instance.Status != registry.StatusPassing {
		t.Errorf("Register = %+v, want created web-1, passing, heartbeat every 10s", got)
	}
	if got, err = c.Register(ctx, "web", reg); err != nil || got.Created {
		t.Errorf("second Register = %+v, %v; want replaced (not created)", got, err)
	}
	generated, err := c.Register(ctx, "web", registry.Registration{Address: "web-2.example.com", Port: 8080, TTLSeconds: 30})
	if err != nil || generated.Instance.ID == "" {
		t.Fatalf("Register without id = %+v, %v; want a generated id", generated, err)
	}

	in, err := c.Instance(ctx, "web", "web-1")
	if err != nil || in.Address != "10.0.0.5" || in.Metadata["zone"] != "eu-1" {
		t.Errorf("Instance = %+v, %v", in, err)
	}

	renewal, err := c.Heartbeat(ctx, "web", "web-1", registry.StatusWarning)
	if err != nil || renewal.TTLSeconds != 30 || renewal.ExpiresAt.IsZero() {
		t.Errorf("Heartbeat = %+v, %v", renewal, err)
	}

	lookups := []struct {
		name string
		opts client.LookupOptions
		want []string
	}{
		{"all live", client.LookupOptions{}, []string{"web-1", generated.Instance.ID}},
		{"by tag", client.LookupOptions{Tags: []string{"v2"}}, []string{"web-1"}},
		{"by meta", client.LookupOptions{Meta: map[string]string{"zone": "eu-1"}}, []string{"web-1"}},
		{"passing only", client.LookupOptions{Status: "passing"}, []string{generated.Instance.ID}},
		{"no match", client.LookupOptions{Tags: []string{"v2"}, Meta: map[string]string{"zone": "us-1"}}, nil},
	}
	for _, tt := range lookups {
		res, err := c.Lookup(ctx, "web", tt.opts)
		if err != nil {
			t.Fatalf("Lookup %s: %v", tt.name, err)
		}
		if ids := idsOf(res.Instances); !slices.Equal(ids, sorted(tt.want)) {
			t.Errorf("Lookup %s = %v, want %v", tt.name, ids, sorted(tt.want))
		}
		if res.Service != "web" || res.Index == 0 {
			t.Errorf("Lookup %s: service %q index %d", tt.name, res.Service, res.Index)
		}
	}

	catalog, err := c.Services(ctx, client.QueryOptions{})
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	want := []client.ServiceSummary{{Name: "web", Instances: 2, Passing: 1}}
	if !slices.Equal(catalog.Services, want) || catalog.Index == 0 {
		t.Errorf("Services = %+v, want %+v with an index", catalog, want)
	}

	health, err := c.ServiceHealth(ctx, "web")
	if err != nil || !health.Healthy || health.Passing != 1 || health.Warning != 1 || health.Instances != 2 {
		t.Errorf("ServiceHealth(web) = %+v, %v", health, err)
	}
	health, err = c.ServiceHealth(ctx, "nothing")
	if err != nil || health.Healthy {
		t.Errorf("ServiceHealth(nothing) = %+v, %v; want unhealthy without error", health, err)
	}

	if err := c.Deregister(ctx, "web", "web-1"); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	for name, call := range map[string]func() error{
		"Deregister": func() error { return c.Deregister(ctx, "web", "web-1") },
		"Heartbeat":  func() error { _, err := c.Heartbeat(ctx, "web", "web-1", ""); return err },
		"Instance":   func() error { _, err := c.Instance(ctx, "web", "web-1"); return err },
	} {
		err := call()
		var apiErr *client.Error
		if !errors.Is(err, registry.ErrNotFound) || !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Errorf("%s of a deregistered instance = %v, want a 404 matching registry.ErrNotFound", name, err)
		}
	}
}

func TestInvalidInputNamesTheField(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{})
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"port", func() error {
			_, err := c.Register(ctx, "web", registry.Registration{Address: "10.0.0.5", Port: 70000})
			return err
		}, "port"},
		{"address", func() error {
			_, err := c.Register(ctx, "web", registry.Registration{Address: "not an address", Port: 80})
			return err
		}, "address"},
		{"service", func() error {
			_, err := c.Register(ctx, "-web", registry.Registration{Address: "10.0.0.5", Port: 80})
			return err
		}, "service"},
		{"status", func() error {
			_, err := c.Lookup(ctx, "web", client.LookupOptions{Status: "sick"})
			return err
		}, "status"},
		{"heartbeat status", func() error {
			_, err := c.Register(ctx, "web", registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80})
			if err != nil {
				return err
			}
			_, err = c.Heartbeat(ctx, "web", "a", "sick")
			return err
		}, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var apiErr *client.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want *client.Error", err)
			}
			if apiErr.Status != http.StatusBadRequest || apiErr.Code != client.CodeInvalidArgument || apiErr.Field != tt.field {
				t.Errorf("error = %+v, want 400 invalid_argument naming %s", apiErr, tt.field)
			}
		})
	}
}

func TestBlockingLookupWakesOnChange(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{})
	if _, err := c.Register(ctx, "web", registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Lookup(ctx, "web", client.LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		res client.ServiceInstances
		err error
	}
	woke := make(chan answer, 1)
	go func() {
		res, err := c.Lookup(ctx, "web", client.LookupOptions{QueryOptions: client.QueryOptions{Index: before.Index, Wait: time.Minute}})
		woke <- answer{res, err}
	}()
	select {
	case got := <-woke:
		t.Fatalf("blocking Lookup answered before any change: %+v, %v", got.res, got.err)
	case <-time.After(100 * time.Millisecond): // still waiting, as it should
	}
	if _, err := c.Register(ctx, "web", registry.Registration{ID: "b", Address: "10.0.0.6", Port: 80}); err != nil {
		t.Fatal(err)
	}
	got := <-woke
	if got.err != nil {
		t.Fatalf("blocking Lookup: %v", got.err)
	}
	if got.res.Index <= before.Index || !slices.Equal(idsOf(got.res.Instances), []string{"a", "b"}) {
		t.Errorf("blocking Lookup = index %d %v, want index > %d with a and b", got.res.Index, idsOf(got.res.Instances), before.Index)
	}
}

func TestBlockingQueriesEndAfterWaitWithTheSameIndex(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{})
	if _, err := c.Register(ctx, "web", registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Lookup(ctx, "web", client.LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Lookup(ctx, "web", client.LookupOptions{QueryOptions: client.QueryOptions{Index: res.Index, Wait: 50 * time.Millisecond}})
	if err != nil || again.Index != res.Index {
		t.Errorf("Lookup after its wait = index %d, %v; want %d", again.Index, err, res.Index)
	}
	catalog, err := c.Services(ctx, client.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same, err := c.Services(ctx, client.QueryOptions{Index: catalog.Index, Wait: 50 * time.Millisecond})
	if err != nil || same.Index != catalog.Index {
		t.Errorf("Services after its wait = index %d, %v; want %d", same.Index, err, catalog.Index)
	}
}

func TestEventsFollowOnlyTheNamedServices(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{})
	stream, err := c.Events(ctx, "web")
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	t.Cleanup(func() { _ = stream.Close() })

	steps := []func() error{
		func() error {
			_, err := c.Register(ctx, "web", registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80})
			return err
		},
		func() error {
			_, err := c.Register(ctx, "api", registry.Registration{ID: "x", Address: "10.0.0.7", Port: 80})
			return err
		},
		func() error {
			_, err := c.Heartbeat(ctx, "web", "a", registry.StatusWarning)
			return err
		},
		func() error { return c.Deregister(ctx, "web", "a") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []registry.EventType{registry.EventRegistered, registry.EventUpdated, registry.EventDeregistered}
	var lastIndex uint64
	for _, typ := range want {
		ev, err := stream.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.Type != typ || ev.Service != "web" || ev.Instance.ID != "a" || ev.Index <= lastIndex {
			t.Errorf("event = %+v, want %s of web/a with an index above %d", ev, typ, lastIndex)
		}
		lastIndex = ev.Index
	}
}

func TestExpiredInstancesAreGone(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, clienttest.Options{})
	stream, err := c.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Close() })
	if _, err := c.Register(ctx, "web", registry.Registration{ID: "a", Address: "10.0.0.5", Port: 80, TTLSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []registry.EventType{registry.EventRegistered, registry.EventExpired} {
		ev, err := stream.Next()
		if err != nil || ev.Type != want {
			t.Fatalf("event = %+v, %v; want %s", ev, err, want)
		}
	}
	if _, err := c.Heartbeat(ctx, "web", "a", ""); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Heartbeat after expiry = %v, want not found", err)
	}
	res, err := c.Lookup(ctx, "web", client.LookupOptions{Status: client.StatusAny})
	if err != nil || len(res.Instances) != 0 {
		t.Errorf("Lookup after expiry = %+v, %v; want no instances", res, err)
	}
}

func TestHealthReport(t *testing.T) {
	c := newClient(t, clienttest.Options{})
	report, err := c.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !report.Healthy() || report.Service != "saga" || report.Version != "test" || report.Storage != "embedded" {
		t.Errorf("Health = %+v", report)
	}
}

func TestKeepAliveAgainstTheServer(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := newClient(t, clienttest.Options{})
	registered := make(chan client.Registered, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.KeepAlive(ctx, "web", registry.Registration{ID: "k", Address: "10.0.0.5", Port: 80, TTLSeconds: 2},
			client.KeepAliveOptions{OnRegister: func(r client.Registered) { registered <- r }})
	}()
	first := <-registered
	if first.HeartbeatInterval != time.Second {
		t.Errorf("heartbeat interval = %s, want 1s (half the TTL)", first.HeartbeatInterval)
	}

	// Past the TTL, the heartbeats have kept the instance alive.
	time.Sleep(3 * time.Second)
	if _, err := c.Instance(t.Context(), "web", "k"); err != nil {
		t.Fatalf("after 3s with a 2s TTL: %v", err)
	}

	// The server forgets the instance: KeepAlive registers it again.
	if err := c.Deregister(t.Context(), "web", "k"); err != nil {
		t.Fatal(err)
	}
	if again := <-registered; again.Instance.ID != "k" || !again.Created {
		t.Errorf("registered again = %+v, want k created anew", again)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("KeepAlive = %v", err)
	}
	if _, err := c.Instance(t.Context(), "web", "k"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after KeepAlive ended: %v, want the instance deregistered", err)
	}
}

func idsOf(instances []registry.Instance) []string {
	ids := make([]string, 0, len(instances))
	for _, in := range instances {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}
