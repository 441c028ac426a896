package registry

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"unicode"
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
	// metaKeyPattern holds the characters that a meta=key:value lookup can
	// name: no ':' (the lookup splits there), no space, nothing outside
	// ASCII. Consul's node-meta keys, plus '.' and '/' for prefixed keys
	// such as example.com/team.
	metaKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,128}$`)
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

// Validate checks a registration for service against SPEC §2's limits and
// §7's rules for checks, with other check targets refused. It returns a
// *FieldError naming the first offending field.
func (r Registration) Validate(service string) error {
	return r.ValidateWith(service, CheckPolicy{})
}

// ValidateWith is Validate under the operator's policy for checks.
func (r Registration) ValidateWith(service string, policy CheckPolicy) error {
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
	if err := validateTags(r.Tags); err != nil {
		return err
	}
	if err := validateMetadata(r.Metadata); err != nil {
		return err
	}
	if r.TTLSeconds != 0 && (r.TTLSeconds < MinTTLSeconds || r.TTLSeconds > MaxTTLSeconds) {
		return &FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("%d is out of range %d-%d", r.TTLSeconds, MinTTLSeconds, MaxTTLSeconds)}
	}
	if err := validateChecks(r.Checks, r.Address, r.Port, policy); err != nil {
		return err
	}
	if len(r.Checks) > 0 && r.TTLSeconds != 0 && r.TTLSeconds < MinCheckedTTLSeconds {
		return &FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("%d is below %d, the least for an instance with checks", r.TTLSeconds, MinCheckedTTLSeconds)}
	}
	return nil
}

// validateTags checks each tag: 1-128 bytes of UTF-8 text without control
// characters, which would reach the terminals that print them.
func validateTags(tags []string) error {
	if len(tags) > MaxTags {
		return &FieldError{Field: "tags", Message: fmt.Sprintf("%d tags, at most %d allowed", len(tags), MaxTags)}
	}
	for i, tag := range tags {
		field := fmt.Sprintf("tags[%d]", i)
		if tag == "" {
			return &FieldError{Field: field, Message: "must not be empty"}
		}
		if len(tag) > MaxTagBytes {
			return &FieldError{Field: field, Message: fmt.Sprintf("%d bytes, at most %d allowed", len(tag), MaxTagBytes)}
		}
		if msg := checkText(tag); msg != "" {
			return &FieldError{Field: field, Message: fmt.Sprintf("%q %s", truncate(tag), msg)}
		}
	}
	return nil
}

// validateMetadata checks keys and values in key order, so the same bad
// map always names the same key. A key is what a lookup's meta=key:value
// can match (metaKeyPattern); a value is UTF-8 text without control
// characters.
func validateMetadata(m map[string]string) error {
	if len(m) > MaxMetadataKeys {
		return &FieldError{Field: "metadata", Message: fmt.Sprintf("%d keys, at most %d allowed", len(m), MaxMetadataKeys)}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case k == "":
			return &FieldError{Field: "metadata", Message: "keys must not be empty"}
		case len(k) > MaxMetaKeyBytes:
			return &FieldError{Field: "metadata", Message: fmt.Sprintf("key %q is %d bytes, at most %d allowed", truncate(k), len(k), MaxMetaKeyBytes)}
		case !metaKeyPattern.MatchString(k):
			return &FieldError{Field: "metadata", Message: fmt.Sprintf("key %q must match [A-Za-z0-9_./-]{1,128}", truncate(k))}
		}
		v := m[k]
		if len(v) > MaxMetaValueBytes {
			return &FieldError{Field: "metadata." + k, Message: fmt.Sprintf("value is %d bytes, at most %d allowed", len(v), MaxMetaValueBytes)}
		}
		if msg := checkText(v); msg != "" {
			return &FieldError{Field: "metadata." + k, Message: fmt.Sprintf("value %q %s", truncate(v), msg)}
		}
	}
	return nil
}

// checkText says what is wrong with free text (a tag, a metadata value),
// or "" when nothing is: it must be UTF-8 and hold no control character
// (C0, DEL or C1).
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "must not hold control characters"
	}
	return ""
}

// validateAddress accepts an IP address or an RFC 1123 host name.
func validateAddress(addr string) error {
	if addr == "" {
		return &FieldError{Field: "address", Message: "must not be empty"}
	}
	bad := func(why string) error {
		return &FieldError{Field: "address", Message: fmt.Sprintf("%q is neither a valid IP address nor an RFC 1123 host name%s", truncate(addr), why)}
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		// An IPv6 zone names a network interface (fe80::1%eth0); netip
		// takes any text there.
		if zone := ip.Zone(); zone != "" && !namePattern.MatchString(zone) {
			return bad("; an IPv6 zone must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
		}
		return nil
	}
	if !isHostname(addr) {
		return bad("")
	}
	if endsInANumber(addr) {
		return bad("; a name that ends in a number is read as an IPv4 address")
	}
	return nil
}

// IsHostName reports whether s is an RFC 1123 host name that no resolver
// would read as an IPv4 address (see endsInANumber): the one host-name
// rule of Saga, for instance addresses and the server's own host alike.
func IsHostName(s string) bool { return isHostname(s) && !endsInANumber(s) }

func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".") // a fully qualified name may end in a dot, beyond the 253
	if s == "" || len(s) > MaxHostnameLength {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !labelPattern.MatchString(label) {
			return false
		}
	}
	return true
}

// endsInANumber reports whether a host name's last label is a number:
// all decimal digits (a top-level domain never is, RFC 3696 §2) or 0x and
// hex digits. Resolvers and URL parsers (inet_aton, the WHATWG URL
// standard's "ends in a number") read such a name as an IPv4 address in
// decimal, octal or hex, so "999.1.1.1", "1.2.3", "01.2.3.4" and
// "0x7f.0.0.1" are malformed addresses, not host names.
func endsInANumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	digits := "0123456789"
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		last, digits = last[2:], "0123456789abcdefABCDEF"
		if last == "" {
			return true
		}
	}
	return strings.Trim(last, digits) == ""
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

// ValidateStored checks what every store requires of an instance it keeps,
// whoever calls it (the API validates requests before they get here): names
// that fit the key layout, a TTL in range, a known status.
func ValidateStored(in Instance) error {
	if err := ValidateName("service", in.Service); err != nil {
		return err
	}
	if err := ValidateName("id", in.ID); err != nil {
		return err
	}
	if in.TTLSeconds < MinTTLSeconds || in.TTLSeconds > MaxTTLSeconds {
		return &FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("%d is out of range %d-%d", in.TTLSeconds, MinTTLSeconds, MaxTTLSeconds)}
	}
	if !in.Status.Valid() {
		return &FieldError{Field: "status", Message: fmt.Sprintf("%q must be passing, warning or critical", in.Status)}
	}
	return nil
}
