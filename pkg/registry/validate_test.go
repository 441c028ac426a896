package registry_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/sagaproject/saga/pkg/registry"
)

func TestRegistrationValidate(t *testing.T) {
	valid := func() registry.Registration {
		return registry.Registration{ID: "a", Address: "10.0.0.1", Port: 80}
	}
	manyTags := func(n int) []string {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprint("t", i)
		}
		return tags
	}
	manyKeys := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprint("k", i)] = "v"
		}
		return m
	}
	label63 := strings.Repeat("a", 63)
	host253 := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 61)}, ".") // 63*3 + 61 + 3 dots

	tests := []struct {
		name    string
		service string
		mutate  func(*registry.Registration)
		field   string // "" when valid
	}{
		{"minimal", "web", func(*registry.Registration) {}, ""},
		{"no id: one is generated", "web", func(r *registry.Registration) { r.ID = "" }, ""},
		{"name characters", "Web.v2_eu-1", func(r *registry.Registration) { r.ID = "0.a_B-c" }, ""},
		{"service 128 characters", strings.Repeat("s", 128), func(*registry.Registration) {}, ""},
		{"service 129 characters", strings.Repeat("s", 129), func(*registry.Registration) {}, "service"},
		{"service empty", "", func(*registry.Registration) {}, "service"},
		{"service starts with a dot", ".web", func(*registry.Registration) {}, "service"},
		{"service starts with a dash", "-web", func(*registry.Registration) {}, "service"},
		{"service with a slash", "web/api", func(*registry.Registration) {}, "service"},
		{"service with a space", "web api", func(*registry.Registration) {}, "service"},
		{"service not ASCII", "wéb", func(*registry.Registration) {}, "service"},
		{"service with a newline", "web\n", func(*registry.Registration) {}, "service"},
		{"id 128 characters", "web", func(r *registry.Registration) { r.ID = strings.Repeat("i", 128) }, ""},
		{"id 129 characters", "web", func(r *registry.Registration) { r.ID = strings.Repeat("i", 129) }, "id"},
		{"id starts with an underscore", "web", func(r *registry.Registration) { r.ID = "_a" }, "id"},
		{"id with a colon", "web", func(r *registry.Registration) { r.ID = "a:b" }, "id"},

		{"address IPv6", "web", func(r *registry.Registration) { r.Address = "2001:db8::1" }, ""},
		{"address IPv6 loopback", "web", func(r *registry.Registration) { r.Address = "::1" }, ""},
		{"address host name", "web", func(r *registry.Registration) { r.Address = "db-1.eu.example.com" }, ""},
		{"address single label", "web", func(r *registry.Registration) { r.Address = "localhost" }, ""},
		{"address fully qualified", "web", func(r *registry.Registration) { r.Address = "example.com." }, ""},
		{"address label of 63", "web", func(r *registry.Registration) { r.Address = label63 + ".com" }, ""},
		{"address label of 64", "web", func(r *registry.Registration) { r.Address = label63 + "a.com" }, "address"},
		{"address of 253", "web", func(r *registry.Registration) { r.Address = host253 }, ""},
		{"address of 253 with the root dot", "web", func(r *registry.Registration) { r.Address = host253 + "." }, ""},
		{"address of 254", "web", func(r *registry.Registration) { r.Address = host253 + "b" }, "address"},
		{"address empty", "web", func(r *registry.Registration) { r.Address = "" }, "address"},
		{"address only a dot", "web", func(r *registry.Registration) { r.Address = "." }, "address"},
		{"address empty label", "web", func(r *registry.Registration) { r.Address = "a..b" }, "address"},
		{"address label starts with a dash", "web", func(r *registry.Registration) { r.Address = "-a.com" }, "address"},
		{"address label ends with a dash", "web", func(r *registry.Registration) { r.Address = "a-.com" }, "address"},
		{"address underscore", "web", func(r *registry.Registration) { r.Address = "a_b.com" }, "address"},
		{"address with a port", "web", func(r *registry.Registration) { r.Address = "10.0.0.1:80" }, "address"},
		{"address URL", "web", func(r *registry.Registration) { r.Address = "http://example.com" }, "address"},
		{"address with a space", "web", func(r *registry.Registration) { r.Address = "a b" }, "address"},
		{"address with invalid UTF-8", "web", func(r *registry.Registration) { r.Address = "db\xff.example.com" }, "address"},
		{"address with an escape", "web", func(r *registry.Registration) { r.Address = "db\x1b[31m.example.com" }, "address"},
		{"address IPv6 with a zone", "web", func(r *registry.Registration) { r.Address = "fe80::1%eth0" }, ""},
		{"address IPv6 zone with an escape", "web", func(r *registry.Registration) { r.Address = "fe80::1%\x1b[31m" }, "address"},
		{"address IPv6 zone with a space", "web", func(r *registry.Registration) { r.Address = "fe80::1%a b" }, "address"},
		// A name whose last label is a number is an IPv4 address to every
		// resolver (RFC 3696 §2; inet_aton; the WHATWG URL standard), so a
		// malformed IPv4 address is not taken for a host name.
		{"address IPv4 octet over 255", "web", func(r *registry.Registration) { r.Address = "999.1.1.1" }, "address"},
		{"address IPv4 of three parts", "web", func(r *registry.Registration) { r.Address = "1.2.3" }, "address"},
		{"address IPv4 of five parts", "web", func(r *registry.Registration) { r.Address = "1.2.3.4.5" }, "address"},
		{"address IPv4 in hex", "web", func(r *registry.Registration) { r.Address = "0x7f.0.0.1" }, "address"},
		{"address IPv4 hex last part", "web", func(r *registry.Registration) { r.Address = "127.0.0.0x1" }, "address"},
		{"address IPv4 as one hex number", "web", func(r *registry.Registration) { r.Address = "0x7F000001" }, "address"},
		{"address IPv4 bare 0x", "web", func(r *registry.Registration) { r.Address = "1.2.3.0x" }, "address"},
		{"address IPv4 leading zero", "web", func(r *registry.Registration) { r.Address = "01.2.3.4" }, "address"},
		{"address IPv4 octal", "web", func(r *registry.Registration) { r.Address = "0177.0.0.1" }, "address"},
		{"address IPv4 as one number", "web", func(r *registry.Registration) { r.Address = "2130706433" }, "address"},
		{"address IPv4 with a trailing dot", "web", func(r *registry.Registration) { r.Address = "1.2.3.4." }, "address"},
		{"address number with a root dot", "web", func(r *registry.Registration) { r.Address = "999.1.1.1." }, "address"},
		{"address numeric labels before a name", "web", func(r *registry.Registration) { r.Address = "1.2.3.example" }, ""},
		{"address label starting with digits", "web", func(r *registry.Registration) { r.Address = "3com.com" }, ""},
		{"address last label almost hex", "web", func(r *registry.Registration) { r.Address = "a.0x1g" }, ""},
		{"address last label alphanumeric", "web", func(r *registry.Registration) { r.Address = "host.1a" }, ""},

		{"port 1", "web", func(r *registry.Registration) { r.Port = 1 }, ""},
		{"port 65535", "web", func(r *registry.Registration) { r.Port = 65535 }, ""},
		{"port 0", "web", func(r *registry.Registration) { r.Port = 0 }, "port"},
		{"port 65536", "web", func(r *registry.Registration) { r.Port = 65536 }, "port"},
		{"port negative", "web", func(r *registry.Registration) { r.Port = -1 }, "port"},

		{"64 tags", "web", func(r *registry.Registration) { r.Tags = manyTags(64) }, ""},
		{"65 tags", "web", func(r *registry.Registration) { r.Tags = manyTags(65) }, "tags"},
		{"tag of 128 bytes", "web", func(r *registry.Registration) { r.Tags = []string{strings.Repeat("t", 128)} }, ""},
		{"tag of 129 bytes", "web", func(r *registry.Registration) { r.Tags = []string{"ok", strings.Repeat("t", 129)} }, "tags[1]"},
		{"empty tag", "web", func(r *registry.Registration) { r.Tags = []string{"ok", "ok", ""} }, "tags[2]"},
		{"tag with spaces and Unicode", "web", func(r *registry.Registration) { r.Tags = []string{"a b", "ünï", "k=v:w,x"} }, ""},
		{"tag with an escape", "web", func(r *registry.Registration) { r.Tags = []string{"ok", "\x1b[2J"} }, "tags[1]"},
		{"tag with a newline", "web", func(r *registry.Registration) { r.Tags = []string{"a\nb"} }, "tags[0]"},
		{"tag with a tab", "web", func(r *registry.Registration) { r.Tags = []string{"a\tb"} }, "tags[0]"},
		{"tag with NUL", "web", func(r *registry.Registration) { r.Tags = []string{"a\x00"} }, "tags[0]"},
		{"tag with DEL", "web", func(r *registry.Registration) { r.Tags = []string{"a\x7f"} }, "tags[0]"},
		{"tag with a C1 control", "web", func(r *registry.Registration) { r.Tags = []string{"a\u009b31m"} }, "tags[0]"},
		{"tag with invalid UTF-8", "web", func(r *registry.Registration) { r.Tags = []string{"a\xff"} }, "tags[0]"},

		{"64 metadata keys", "web", func(r *registry.Registration) { r.Metadata = manyKeys(64) }, ""},
		{"65 metadata keys", "web", func(r *registry.Registration) { r.Metadata = manyKeys(65) }, "metadata"},
		{"metadata key of 128 bytes", "web", func(r *registry.Registration) { r.Metadata = map[string]string{strings.Repeat("k", 128): "v"} }, ""},
		{"metadata key of 129 bytes", "web", func(r *registry.Registration) { r.Metadata = map[string]string{strings.Repeat("k", 129): "v"} }, "metadata"},
		{"metadata empty key", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"": "v"} }, "metadata"},
		{"metadata value of 512 bytes", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": strings.Repeat("v", 512)} }, ""},
		{"metadata value of 513 bytes", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": strings.Repeat("v", 513)} }, "metadata.k"},
		{"metadata empty value", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": ""} }, ""},
		{"metadata key characters", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"ex.com/a_B-1": "v", "_": "v"} }, ""},
		{"metadata key with a colon", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"a:b": "v"} }, "metadata"},
		{"metadata key with a space", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"a b": "v"} }, "metadata"},
		{"metadata key with an equals sign", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"a=b": "v"} }, "metadata"},
		{"metadata key not ASCII", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"zöne": "v"} }, "metadata"},
		{"metadata key with a newline", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"a\n": "v"} }, "metadata"},
		{"metadata key with invalid UTF-8", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"a\xff": "v"} }, "metadata"},
		{"metadata value free text", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": `{"a": [1, "ü"]} x:y=z`} }, ""},
		{"metadata value with an escape", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": "\x1b]0;owned\x07"} }, "metadata.k"},
		{"metadata value with a newline", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": "a\nb"} }, "metadata.k"},
		{"metadata value with a C1 control", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": "\u0085"} }, "metadata.k"},
		{"metadata value with invalid UTF-8", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"k": "\xc3"} }, "metadata.k"},
		{"metadata first bad key in key order", "web", func(r *registry.Registration) { r.Metadata = map[string]string{"b": "\n", "a": "\n", "c": "\n"} }, "metadata.a"},

		{"ttl 0 takes the default", "web", func(r *registry.Registration) { r.TTLSeconds = 0 }, ""},
		{"ttl 1", "web", func(r *registry.Registration) { r.TTLSeconds = 1 }, ""},
		{"ttl 86400", "web", func(r *registry.Registration) { r.TTLSeconds = 86400 }, ""},
		{"ttl 86401", "web", func(r *registry.Registration) { r.TTLSeconds = 86401 }, "ttl_seconds"},
		{"ttl negative", "web", func(r *registry.Registration) { r.TTLSeconds = -5 }, "ttl_seconds"},

		// The first offending field is named, in the order of the request.
		{"service before port", "", func(r *registry.Registration) { r.Port = 0 }, "service"},
		{"address before port", "web", func(r *registry.Registration) { r.Address, r.Port = "", 0 }, "address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			tt.mutate(&r)
			err := r.Validate(tt.service)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want valid", err)
				}
				return
			}
			var fe *registry.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError for %s", err, tt.field)
			}
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

func TestValidateStatus(t *testing.T) {
	for _, s := range []registry.Status{"", registry.StatusPassing, registry.StatusWarning, registry.StatusCritical} {
		if err := registry.ValidateStatus(s); err != nil {
			t.Errorf("ValidateStatus(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []registry.Status{"PASSING", "ok", "healthy", " passing"} {
		var fe *registry.FieldError
		if err := registry.ValidateStatus(s); !errors.As(err, &fe) || fe.Field != "status" {
			t.Errorf("ValidateStatus(%q) = %v, want a FieldError for status", s, err)
		}
	}
}

// Error messages quote bad input, cut short so that a huge value stays one
// readable line, and never cut a character in half.
func TestErrorMessagesStayShort(t *testing.T) {
	for _, input := range []string{strings.Repeat("x", 100_000), strings.Repeat("é", 50_000), "a" + strings.Repeat("é", 40)} {
		err := registry.ValidateName("id", "-"+input)
		if err == nil {
			t.Fatal("invalid id accepted")
		}
		if msg := err.Error(); len(msg) > 200 || !utf8.ValidString(msg) {
			t.Errorf("message of %d bytes (valid UTF-8: %v): %.80q…", len(msg), utf8.ValidString(msg), msg)
		}
	}
}

// A refused key is quoted in the message, never in the field, so the field
// stays short and valid UTF-8 however the key was spelt.
func TestFieldNameStaysValidUTF8(t *testing.T) {
	for _, key := range []string{"a" + strings.Repeat("é", 60), "a\xff", strings.Repeat("k", 200)} {
		r := registry.Registration{Address: "10.0.0.1", Port: 80, Metadata: map[string]string{key: "v"}}
		var fe *registry.FieldError
		if err := r.Validate("web"); !errors.As(err, &fe) {
			t.Fatalf("Validate = %v, want a FieldError", err)
		}
		if fe.Field != "metadata" || !utf8.ValidString(fe.Message) || len(fe.Message) > 200 {
			t.Errorf("field %q, message %q: want metadata and a short message in valid UTF-8", fe.Field, fe.Message)
		}
	}
	key := strings.Repeat("k", 128)
	r := registry.Registration{Address: "10.0.0.1", Port: 80, Metadata: map[string]string{key: "\n"}}
	var fe *registry.FieldError
	if err := r.Validate("web"); !errors.As(err, &fe) || fe.Field != "metadata."+key {
		t.Errorf("Validate = %v, want the field metadata.%s", err, key)
	}
}

func FuzzRegistrationValidate(f *testing.F) {
	f.Add("web", "a", "10.0.0.1", 80, "tag", "k", "v", 30)
	f.Add("", "", "", 0, "", "", "", 0)
	f.Add("a.b_c-d", "x", "example.com.", 65535, "é", "ü", "ß", 86400)
	f.Add("web", "a", "999.1.1.1", 80, "\x1b[2J", "a:b", "\n", 30)
	f.Add("web", "a", "fe80::1%eth0", 80, "t", "example.com/k", "\xff", 30)
	f.Fuzz(func(t *testing.T, service, id, address string, port int, tag, key, value string, ttl int) {
		r := registry.Registration{ID: id, Address: address, Port: port, Tags: []string{tag}, Metadata: map[string]string{key: value}, TTLSeconds: ttl}
		err := r.Validate(service)
		if err == nil {
			// What is accepted is safe to print and can be looked up.
			for _, s := range []string{address, tag, value} {
				if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
					t.Fatalf("accepted %q: invalid UTF-8 or a control character", s)
				}
			}
			if strings.ContainsAny(key, ": =") {
				t.Fatalf("accepted the metadata key %q, which meta=key:value cannot match", key)
			}
			return
		}
		var fe *registry.FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Fatalf("Validate = %v, want a *FieldError naming a field", err)
		}
		if !utf8.ValidString(fe.Field) && utf8.ValidString(key) {
			t.Fatalf("field %q is not valid UTF-8", fe.Field)
		}
	})
}
