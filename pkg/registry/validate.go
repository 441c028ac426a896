package registry

import (
	"fmt"
	"net/netip"
	"regexp"
	"unicode/utf8"
)

// Limits on what a registration may hold (SPEC §2).
const (
	MaxNameLength     = 128
	MaxTags           = 64
	MaxTagBytes       = 128
	MaxMetadataKeys   = 64
	MaxMetaKeyBytes   = 128
	MaxMetaValueBytes = 512
	MinTTLSeconds     = 1
	MaxTTLSeconds     = 86400
	MaxHostnameLength = 253
)

var (
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	labelPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// ValidateName checks a service name or instance id; field names the
// request field it came from ("service", "id").
func ValidateName(field, name string) error {
	if name == "" {
		return &FieldError{Field: field, Message: "must not be empty"}
	}
	if !namePattern.MatchString(name) {
		return &FieldError{Field: field, Message: fmt.Sprintf("%q must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}", truncate(name))}
	}
	return nil
}

// ValidateStatus checks a status sent with a heartbeat; empty means unchanged.
func ValidateStatus(s Status) error {
	if s != "" && !s.Valid() {
		return &FieldError{Field: "status", Message: fmt.Sprintf("%q must be passing, warning or critical", truncate(string(s)))}
	}
	return nil
}

// Validate checks a registration for service against SPEC §2's limits. It
// returns a *FieldError naming the first offending field.
func (r Registration) Validate(service string) error {
	if err := ValidateName("service", service); err != nil {
		return err
	}
	if r.ID != "" {
		if err := ValidateName("id", r.ID); err != nil {
			return err
		}
	}
	if err := validateAddress(r.Address); err != nil {
		return err
	}
	if r.Port < 1 || r.Port > 65535 {
		return &FieldError{Field: "port", Message: fmt.Sprintf("%d is out of range 1-65535", r.Port)}
	}
	if len(r.Tags) > MaxTags {
		return &FieldError{Field: "tags", Message: fmt.Sprintf("%d tags, at most %d allowed", len(r.Tags), MaxTags)}
	}
	for i, tag := range r.Tags {
		field := fmt.Sprintf("tags[%d]", i)
		if tag == "" {
			return &FieldError{Field: field, Message: "must not be empty"}
		}
		if len(tag) > MaxTagBytes {
			return &FieldError{Field: field, Message: fmt.Sprintf("%d bytes, at most %d allowed", len(tag), MaxTagBytes)}
		}
	}
	if len(r.Metadata) > MaxMetadataKeys {
		return &FieldError{Field: "metadata", Message: fmt.Sprintf("%d keys, at most %d allowed", len(r.Metadata), MaxMetadataKeys)}
	}
	for k, v := range r.Metadata {
		if k == "" {
			return &FieldError{Field: "metadata", Message: "keys must not be empty"}
		}
		if len(k) > MaxMetaKeyBytes {
			return &FieldError{Field: "metadata", Message: fmt.Sprintf("key %q is %d bytes, at most %d allowed", truncate(k), len(k), MaxMetaKeyBytes)}
		}
		if len(v) > MaxMetaValueBytes {
			return &FieldError{Field: "metadata." + truncate(k), Message: fmt.Sprintf("value is %d bytes, at most %d allowed", len(v), MaxMetaValueBytes)}
		}
	}
	if r.TTLSeconds != 0 && (r.TTLSeconds < MinTTLSeconds || r.TTLSeconds > MaxTTLSeconds) {
		return &FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("%d is out of range %d-%d", r.TTLSeconds, MinTTLSeconds, MaxTTLSeconds)}
	}
	return nil
}

// validateAddress accepts an IP address or an RFC 1123 host name.
func validateAddress(addr string) error {
	if addr == "" {
		return &FieldError{Field: "address", Message: "must not be empty"}
	}
	if _, err := netip.ParseAddr(addr); err == nil {
		return nil
	}
	if isHostname(addr) {
		return nil
	}
	return &FieldError{Field: "address", Message: fmt.Sprintf("%q is neither an IP address nor an RFC 1123 host name", truncate(addr))}
}

func isHostname(s string) bool {
	if s[len(s)-1] == '.' { // a fully qualified name may end in a dot, beyond the 253
		s = s[:len(s)-1]
	}
	if s == "" || len(s) > MaxHostnameLength {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !labelPattern.MatchString(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// truncate keeps error messages one readable line when input is huge.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) { // never split a character
		cut--
	}
	return s[:cut] + "…"
}
