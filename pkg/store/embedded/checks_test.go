package embedded

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Check definitions are part of the record: they survive a reopen, and a
// record written before checks existed still reads, with none.
func TestChecksSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	in := registry.NewInstance("db", registry.Registration{
		ID: "a", Address: "10.0.0.8", Port: 5432,
		Checks: []registry.Check{{TCP: ":5432", Interval: "5s"}},
	}, t0, time.Minute)
	if _, err := s.Register(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := openStore(t, dir).Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Services["db"].Instances
	if len(got) != 1 || !registry.SameCheckDefinitions(got[0].Checks, in.Checks) {
		t.Fatalf("after reopen: %+v, want checks %+v", got, in.Checks)
	}
}

func TestRecordWithoutChecksReads(t *testing.T) {
	plain := registry.NewInstance("web", registry.Registration{ID: "a", Address: "10.0.0.7", Port: 80}, t0, time.Minute)
	// What a release before checks wrote: the same layout, ending after
	// the metadata.
	e, err := parseEntry(newEntry(plain).value())
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.instance("web", "a")
	if err != nil || in.Checks != nil || in.Address != "10.0.0.7" {
		t.Fatalf("old record: %+v, %v", in, err)
	}
	checked := plain
	checked.Checks = []registry.Check{{HTTP: "/healthz"}}
	b := newEntry(checked).value()
	if _, err := parseEntry(b[:len(b)-3]); err == nil {
		t.Errorf("a truncated checks section read without error")
	}
}
