package osservice

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestSystemdState(t *testing.T) {
	for _, tt := range []struct {
		load, active string
		want         State
	}{
		{"loaded", "active", StateRunning},
		{"loaded", "activating", StateRunning},
		{"loaded", "reloading", StateRunning},
		{"loaded", "inactive", StateStopped},
		{"loaded", "failed", StateStopped},
		{"loaded", "deactivating", StateStopped},
		{"not-found", "inactive", StateNotInstalled},
		{"", "", StateNotInstalled},
	} {
		if got := systemdState(tt.load, tt.active); got != tt.want {
			t.Errorf("systemdState(%q, %q) = %v, want %v", tt.load, tt.active, got, tt.want)
		}
	}
}

// recorder stands in for systemctl and useradd in tests of the Manager's
// decisions; the e2e tests run the real ones.
type recorder struct {
	calls   []string
	answers map[string]string
}

func (r *recorder) run(_ context.Context, name string, args ...string) (string, error) {
	call := name + " " + strings.Join(args, " ")
	r.calls = append(r.calls, call)
	return r.answers[call], nil
}

func newTestManager(t *testing.T, host Host, opts Options, r *recorder) *Manager {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "saga"
	}
	if opts.Command.Executable == "" {
		opts.Command = DefaultCommand()
	}
	m, err := New(opts, host, r.run, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInstallEnablesThePackagedUnit(t *testing.T) {
	files := map[string]string{"/run/systemd/system": "", "/usr/lib/systemd/system/saga.service": ""}
	r := &recorder{}
	m := newTestManager(t, fakeHost("linux", 0, "/usr/bin/saga", files, nil), Options{}, r)
	done, err := m.Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !done.Packaged || done.UnitFile != "/usr/lib/systemd/system/saga.service" {
		t.Errorf("Install = %+v, want the packaged unit", done)
	}
	if last := r.calls[len(r.calls)-1]; last != "systemctl enable --now saga.service" {
		t.Errorf("Install ran %q last; want it to enable and start the packaged unit", r.calls)
	}
	if slices.ContainsFunc(r.calls, func(c string) bool { return strings.Contains(c, "daemon-reload") }) {
		t.Errorf("Install wrote a unit over the packaged one: %q", r.calls)
	}
}

func TestStatusReadsSystemctl(t *testing.T) {
	show := "systemctl show --property=LoadState,ActiveState saga.service"
	userShow := "systemctl --user show --property=LoadState,ActiveState saga.service"
	for _, tt := range []struct {
		user   bool
		answer string
		want   State
	}{
		{false, "LoadState=loaded\nActiveState=active\n", StateRunning},
		{false, "ActiveState=failed\nLoadState=loaded\n", StateStopped},
		{false, "LoadState=not-found\nActiveState=inactive\n", StateNotInstalled},
		{true, "LoadState=loaded\nActiveState=active\n", StateRunning},
	} {
		r := &recorder{answers: map[string]string{show: tt.answer, userShow: tt.answer}}
		m := newTestManager(t, fakeHost("linux", 0, "/usr/bin/saga", systemdHost, nil), Options{User: tt.user, Home: "/home/ann"}, r)
		got, err := m.Status(context.Background())
		if err != nil || got != tt.want {
			t.Errorf("Status with %q = %v, %v; want %v", tt.answer, got, err, tt.want)
		}
	}
}

func TestNoSystemdMeansNotInstalled(t *testing.T) {
	r := &recorder{}
	m := newTestManager(t, fakeHost("linux", 0, "/usr/bin/saga", nil, nil), Options{}, r)
	if got, err := m.Status(context.Background()); err != nil || got != StateNotInstalled {
		t.Errorf("Status = %v, %v; want not installed", got, err)
	}
	if err := m.Start(context.Background()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Start = %v, want ErrNotInstalled", err)
	}
	if _, err := m.Install(context.Background()); !errors.Is(err, ErrNoSystemd) {
		t.Errorf("Install = %v, want ErrNoSystemd", err)
	}
	if len(r.calls) > 0 {
		t.Errorf("ran %q on a machine without systemd", r.calls)
	}
}
