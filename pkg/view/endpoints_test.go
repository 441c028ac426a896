package view

import (
	"slices"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

func TestPassing(t *testing.T) {
	v, clock := newView(t)
	events := []registry.Instance{
		inst("web", "a", time.Minute, registry.StatusPassing, []string{"v1"}, nil),
		inst("web", "b", time.Minute, registry.StatusPassing, []string{"v2"}, nil),
		inst("web", "c", time.Minute, registry.StatusWarning, []string{"v1"}, nil),
		inst("web", "d", time.Minute, registry.StatusCritical, []string{"v1"}, nil),
		inst("web", "short", time.Second, registry.StatusPassing, []string{"v1"}, nil),
		inst("db", "x", time.Minute, registry.StatusCritical, nil, nil),
		inst("Api", "y", time.Minute, registry.StatusPassing, nil, nil),
	}
	for i, in := range events {
		v.Apply(registered(in, uint64(i+1)))
	}
	clock.Advance(2 * time.Second) // "short" has expired

	ids := func(eps []Endpoint) []string {
		out := []string{}
		for _, ep := range eps {
			out = append(out, ep.ID)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		service, tag string
		want         []string
		known        bool
	}{
		{"web", "", []string{"a", "b"}, true},
		{"web", "v1", []string{"a"}, true},
		{"web", "v3", []string{}, true},
		{"WEB", "", []string{"a", "b"}, true}, // case-insensitive
		{"api", "", []string{"y"}, true},
		{"db", "", []string{}, true}, // known, nothing passing
		{"nope", "", []string{}, false},
	} {
		eps, known := v.Passing(tc.service, tc.tag)
		if got := ids(eps); !slices.Equal(got, tc.want) || known != tc.known {
			t.Errorf("Passing(%q, %q) = %v, %v; want %v, %v", tc.service, tc.tag, got, known, tc.want, tc.known)
		}
	}
	eps, _ := v.Passing("web", "v2")
	if len(eps) != 1 || eps[0] != (Endpoint{ID: "b", Address: "10.0.0.1", Port: 8080}) {
		t.Errorf("endpoint = %+v", eps)
	}

	// A service whose every instance has expired is unknown.
	clock.Advance(time.Hour)
	if _, known := v.Passing("web", ""); known {
		t.Error("web still known after every instance expired")
	}
}
