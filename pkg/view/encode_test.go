package view

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// The hand-written encoder must give json.Marshal's bytes exactly.
func TestAppendLookupMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	strange := []string{"", "plain", `quote " back \ slash`, "<html> & co", "ctl \x00\x01\x1f\x7f \b\f\n\r\t", "bad \xff\xfe utf8", "sep \u2028 \u2029", "ünïcødé 日本 🎉", "a\xc3"}
	var list []*registry.Instance
	for i, s := range strange {
		list = append(list, &registry.Instance{
			Service: "web", ID: s, Address: s, Port: i, Tags: []string{s, "x"},
			Metadata:   map[string]string{"z": s, "a": "1", s: "k"},
			TTLSeconds: 60, Status: registry.StatusWarning,
			RegisteredAt: at, LastHeartbeat: at.Add(time.Duration(i) * time.Millisecond), ExpiresAt: at.Add(time.Minute),
		})
	}
	list = append(list, &registry.Instance{Service: "web", ID: "nil-slices", RegisteredAt: at.Truncate(time.Second)})
	list = append(list, &registry.Instance{Service: "web", ID: "empty", Tags: []string{}, Metadata: map[string]string{}})
	for _, service := range []string{"web", "we\"b<"} {
		want, err := json.Marshal(lookupBody{Service: service, Index: 42, Instances: derefAll(list)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		got := appendLookup(nil, service, 42, list)
		if !bytes.Equal(got, want) {
			t.Fatalf("hand-encoded answer differs from encoding/json:\n got %s\nwant %s", got, want)
		}
	}
	empty, _ := json.Marshal(lookupBody{Service: "web", Instances: []registry.Instance{}})
	if got := appendLookup(nil, "web", 0, nil); !bytes.Equal(got, append(empty, '\n')) {
		t.Fatalf("empty answer %s, want %s", got, empty)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "\xff", "<>&", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func derefAll(list []*registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(list))
	for i, in := range list {
		out[i] = *in
	}
	return out
}
