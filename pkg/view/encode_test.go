package view

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// The hand-written encoder must give json.Marshal's bytes exactly, in the
// full form and for every set of fields.
func TestAppendLookupMatchesEncodingJSON(t *testing.T) {
	list := strangeInstances()
	for fields := Fields(0); fields <= allFields; fields++ {
		for _, service := range []string{"web", "we\"b<"} {
			want := marshalLookup(t, service, 42, list, fields)
			got := appendLookup(nil, service, 42, list, fields)
			if !bytes.Equal(got, want) {
				t.Fatalf("fields %q: hand-encoded answer differs from encoding/json:\n got %s\nwant %s", fields, got, want)
			}
		}
		if got, want := appendLookup(nil, "web", 0, nil, fields), marshalLookup(t, "web", 0, nil, fields); !bytes.Equal(got, want) {
			t.Fatalf("fields %q: empty answer %s, want %s", fields, got, want)
		}
	}
	// The full form is what json.Marshal makes of registry.Instance itself.
	full, err := json.Marshal(lookupBody{Service: "web", Index: 42, Instances: derefAll(list)})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendLookup(nil, "web", 42, list, 0); !bytes.Equal(got, append(full, '\n')) {
		t.Fatalf("full form differs from encoding/json:\n got %s\nwant %s", got, full)
	}
}

// Every JSON key of registry.Instance is a field a lean answer can ask
// for, in the order the full form writes them.
func TestFieldNamesAreTheInstanceKeys(t *testing.T) {
	var keys []string
	typ := reflect.TypeFor[registry.Instance]()
	for i := range typ.NumField() {
		keys = append(keys, jsonKey(typ.Field(i)))
	}
	if !slices.Equal(keys, FieldNames()) {
		t.Fatalf("instance keys %v, fields %v", keys, FieldNames())
	}
}

func TestParseFields(t *testing.T) {
	for _, tt := range []struct {
		names []string
		want  Fields
		err   string
	}{
		{nil, 0, ""},
		{[]string{"id"}, fieldID, ""},
		{[]string{"port", "id", "id"}, fieldID | fieldPort, ""},
		{FieldNames(), 0, ""}, // every key: the full form
		{[]string{"id", ""}, 0, `"" is not an instance field`},
		{[]string{"ID"}, 0, `"ID" is not an instance field`},
		{[]string{"instances"}, 0, `"instances" is not an instance field`},
	} {
		got, err := ParseFields(tt.names)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFields(%q) = %v, want an error with %s", tt.names, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFields(%q) = %q, %v; want %q", tt.names, got, err, tt.want)
		}
	}
	if got := (fieldID | fieldTags | fieldAddress).String(); got != "id,address,tags" {
		t.Errorf("String() = %q", got)
	}
}

func FuzzAppendInstance(f *testing.F) {
	f.Add(uint16(0), "a", "v1", "zone", "eu")
	f.Add(uint16(fieldID|fieldAddress|fieldPort|fieldTags), "web-1", "<>", "", "\xff")
	f.Add(uint16(fieldChecks), "x", "", "k", "v")
	f.Fuzz(func(t *testing.T, bits uint16, id, tag, key, value string) {
		fields := Fields(bits) & allFields
		in := &registry.Instance{
			Service: "web", ID: id, Address: id + ".example", Port: len(id), Tags: []string{tag},
			Metadata: map[string]string{key: value}, TTLSeconds: 30, Status: registry.Status(value),
			RegisteredAt: start, LastHeartbeat: start.Add(time.Duration(len(tag))), ExpiresAt: start.Add(time.Minute),
		}
		if len(tag)%2 == 0 {
			in.Checks = []registry.Check{{TCP: tag, Output: value}}
		}
		list := []*registry.Instance{in}
		if got, want := appendLookup(nil, key, 7, list, fields), marshalLookup(t, key, 7, list, fields); !bytes.Equal(got, want) {
			t.Fatalf("fields %q:\n got %s\nwant %s", fields, got, want)
		}
	})
}

// strangeInstances hold every kind of string encoding/json escapes, and
// nil, empty and full tags, metadata and checks.
func strangeInstances() []*registry.Instance {
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
	checked := at.Add(time.Second)
	list = append(list, &registry.Instance{Service: "web", ID: "nil-slices", RegisteredAt: at.Truncate(time.Second)})
	list = append(list, &registry.Instance{Service: "web", ID: "empty", Tags: []string{}, Metadata: map[string]string{}})
	list = append(list, &registry.Instance{Service: "web", ID: "checked", Checks: []registry.Check{
		{HTTP: "/healthz", Interval: "10s", Status: registry.StatusPassing, Output: "200 <ok>", LastChecked: &checked},
	}})
	return list
}

// marshalLookup is what json.Marshal makes of a lookup answer whose
// instances are structs of the keys of fields only: the fields of
// registry.Instance, tags and all, picked by reflection.
func marshalLookup(t testing.TB, service string, index uint64, list []*registry.Instance, fields Fields) []byte {
	t.Helper()
	typ := reflect.TypeFor[registry.Instance]()
	var picked []reflect.StructField
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if fields == 0 || fields&(1<<slices.Index(fieldNames[:], jsonKey(sf))) != 0 {
			picked = append(picked, sf)
		}
	}
	lean := reflect.StructOf(picked)
	instances := []any{}
	for _, in := range list {
		v := reflect.New(lean).Elem()
		for _, sf := range picked {
			v.FieldByName(sf.Name).Set(reflect.ValueOf(*in).FieldByName(sf.Name))
		}
		instances = append(instances, v.Interface())
	}
	body, err := json.Marshal(struct {
		Service   string `json:"service"`
		Index     uint64 `json:"index"`
		Instances []any  `json:"instances"`
	}{service, index, instances})
	if err != nil {
		t.Fatal(err)
	}
	return append(body, '\n')
}

func jsonKey(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return name
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
