package registry

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults of active health checks (SPEC §7, docs/checks.md).
const (
	MaxChecks                      = 8
	MaxCheckHeaders                = 16
	MaxCheckTargetBytes            = 512
	MinCheckInterval               = time.Second
	MaxCheckInterval               = 24 * time.Hour
	DefaultCheckInterval           = 10 * time.Second
	DefaultCheckTimeout            = 5 * time.Second
	DefaultSuccessesBeforePassing  = 1
	DefaultFailuresBeforeCritical  = 3
	MaxCheckThreshold              = 100
	DefaultDeregisterCriticalAfter = 10 * time.Minute
	MaxDeregisterCriticalAfter     = 30 * 24 * time.Hour
	// MinCheckedTTLSeconds is the shortest TTL of an instance with checks:
	// the Saga that runs its checks renews it every TTL/3, and when that
	// Saga dies another takes over within about 4 s.
	MinCheckedTTLSeconds = 10
	// MaxCheckOutputBytes bounds the output kept of a probe.
	MaxCheckOutputBytes = 256
)

// Check is an active health check that Saga runs against an instance.
// Exactly one of HTTP and TCP is set. Durations are strings ("10s", or
// whole seconds "10"); NewInstance fills in the defaults, so a stored
// check always says what runs.
//
// Status, Output and LastChecked are the latest result, as seen by the
// Saga that runs the check; they are never stored.
type Check struct {
	HTTP string `json:"http,omitempty"`
	TCP  string `json:"tcp,omitempty"`

	Method        string            `json:"method,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	TLSSkipVerify bool              `json:"tls_skip_verify,omitempty"`

	Interval                string `json:"interval,omitempty"`
	Timeout                 string `json:"timeout,omitempty"`
	SuccessesBeforePassing  int    `json:"successes_before_passing,omitempty"`
	FailuresBeforeCritical  int    `json:"failures_before_critical,omitempty"`
	DeregisterCriticalAfter string `json:"deregister_critical_after,omitempty"`

	Status      Status     `json:"status,omitempty"`
	Output      string     `json:"output,omitempty"`
	LastChecked *time.Time `json:"last_checked,omitempty"`
}

// Kind is "http" or "tcp".
func (c Check) Kind() string {
	if c.HTTP != "" {
		return "http"
	}
	return "tcp"
}

// IntervalDuration is the check's interval; the default when unset.
func (c Check) IntervalDuration() time.Duration { return durationOr(c.Interval, DefaultCheckInterval) }

// TimeoutDuration is the check's timeout; the default, at most the
// interval, when unset.
func (c Check) TimeoutDuration() time.Duration {
	return durationOr(c.Timeout, min(DefaultCheckTimeout, c.IntervalDuration()))
}

// DeregisterAfter is how long the check may stay critical before its
// instance is removed.
func (c Check) DeregisterAfter() time.Duration {
	return durationOr(c.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
}

func durationOr(s string, def time.Duration) time.Duration {
	if d, err := ParseDuration(s); err == nil && s != "" {
		return d
	}
	return def
}

// Definition returns the check without its latest result: what is stored.
func (c Check) Definition() Check {
	c.Headers = maps.Clone(c.Headers)
	c.Status, c.Output, c.LastChecked = "", "", nil
	return c
}

// withDefaults fills in every default, so the stored check says what runs.
func (c Check) withDefaults() Check {
	c = c.Definition()
	if c.HTTP != "" && c.Method == "" {
		c.Method = "GET"
	}
	c.Interval = c.IntervalDuration().String()
	c.Timeout = c.TimeoutDuration().String()
	if c.SuccessesBeforePassing == 0 {
		c.SuccessesBeforePassing = DefaultSuccessesBeforePassing
	}
	if c.FailuresBeforeCritical == 0 {
		c.FailuresBeforeCritical = DefaultFailuresBeforeCritical
	}
	c.DeregisterCriticalAfter = c.DeregisterAfter().String()
	return c
}

// CheckDefinitions returns the definitions of checks, or nil when none.
func CheckDefinitions(checks []Check) []Check {
	if len(checks) == 0 {
		return nil
	}
	out := make([]Check, len(checks))
	for i, c := range checks {
		out[i] = c.Definition()
	}
	return out
}

// SameCheckDefinitions reports whether two lists define the same checks,
// whatever their latest results.
func SameCheckDefinitions(a, b []Check) bool {
	return slices.EqualFunc(a, b, func(x, y Check) bool {
		x, y = x.Definition(), y.Definition()
		return x.HTTP == y.HTTP && x.TCP == y.TCP && x.Method == y.Method &&
			maps.Equal(x.Headers, y.Headers) && x.TLSSkipVerify == y.TLSSkipVerify &&
			x.Interval == y.Interval && x.Timeout == y.Timeout &&
			x.SuccessesBeforePassing == y.SuccessesBeforePassing &&
			x.FailuresBeforeCritical == y.FailuresBeforeCritical &&
			x.DeregisterCriticalAfter == y.DeregisterCriticalAfter
	})
}

// CheckPolicy is what the operator allows of checks
// (checks.allow_other_targets).
type CheckPolicy struct {
	// AllowOtherTargets lets a check name a host other than the
	// instance's own address. Link-local and metadata addresses stay
	// refused.
	AllowOtherTargets bool
}

var (
	methodPattern     = regexp.MustCompile(`^[A-Z]{1,16}$`)
	headerNamePattern = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
)

func validateChecks(checks []Check, address string, port int, policy CheckPolicy) error {
	if len(checks) > MaxChecks {
		return &FieldError{Field: "checks", Message: fmt.Sprintf("%d checks, at most %d allowed", len(checks), MaxChecks)}
	}
	for i, c := range checks {
		if err := validateCheck(c, address, port, policy); err != nil {
			err.Field = fmt.Sprintf("checks[%d]%s", i, err.Field)
			return err
		}
	}
	return nil
}

// validateCheck returns an error whose Field is relative to the check
// ("" for the check itself, ".interval" for a field).
func validateCheck(c Check, address string, port int, policy CheckPolicy) *FieldError {
	bad := func(field, format string, args ...any) *FieldError {
		return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.HTTP == "" && c.TCP == "":
		return bad("", "needs http or tcp")
	case c.HTTP != "" && c.TCP != "":
		return bad("", "takes one of http and tcp, not both")
	case c.Status != "" || c.Output != "" || c.LastChecked != nil:
		return bad("", "status, output and last_checked are set by Saga, not by a registration")
	}
	if c.HTTP != "" {
		if _, err := CheckTarget(c, address, port, policy); err != nil {
			return bad(".http", "%s", err)
		}
		if c.Method != "" && !methodPattern.MatchString(c.Method) {
			return bad(".method", "%q must be an upper-case HTTP method such as GET or HEAD", truncate(c.Method))
		}
		if len(c.Headers) > MaxCheckHeaders {
			return bad(".headers", "%d headers, at most %d allowed", len(c.Headers), MaxCheckHeaders)
		}
		for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
			if !headerNamePattern.MatchString(k) {
				return bad(".headers", "%q is not a valid header name", truncate(k))
			}
			if v := c.Headers[k]; len(v) > MaxMetaValueBytes || checkText(v) != "" {
				return bad(".headers."+k, "must be at most %d bytes of text without control characters", MaxMetaValueBytes)
			}
		}
	} else {
		if c.Method != "" || len(c.Headers) > 0 || c.TLSSkipVerify {
			return bad("", "method, headers and tls_skip_verify apply to http checks only")
		}
		if _, err := CheckTarget(c, address, port, policy); err != nil {
			return bad(".tcp", "%s", err)
		}
	}
	interval, err := parseCheckDuration(c.Interval, DefaultCheckInterval)
	if err != nil {
		return bad(".interval", "%s", err)
	}
	if interval < MinCheckInterval || interval > MaxCheckInterval {
		return bad(".interval", "%s is out of range %s-%s", interval, MinCheckInterval, MaxCheckInterval)
	}
	timeout, err := parseCheckDuration(c.Timeout, min(DefaultCheckTimeout, interval))
	if err != nil {
		return bad(".timeout", "%s", err)
	}
	if timeout <= 0 || timeout > interval {
		return bad(".timeout", "%s must be above 0 and at most the interval (%s)", timeout, interval)
	}
	if n := c.SuccessesBeforePassing; n < 0 || n > MaxCheckThreshold {
		return bad(".successes_before_passing", "%d is out of range 1-%d", n, MaxCheckThreshold)
	}
	if n := c.FailuresBeforeCritical; n < 0 || n > MaxCheckThreshold {
		return bad(".failures_before_critical", "%d is out of range 1-%d", n, MaxCheckThreshold)
	}
	dca, err := parseCheckDuration(c.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
	if err != nil {
		return bad(".deregister_critical_after", "%s", err)
	}
	if dca < time.Second || dca > MaxDeregisterCriticalAfter {
		return bad(".deregister_critical_after", "%s is out of range 1s-%s", dca, MaxDeregisterCriticalAfter)
	}
	return nil
}

func parseCheckDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	return ParseDuration(s)
}

// CheckTarget resolves a check's target against the instance's address:
// for HTTP a URL, for TCP a host:port. A path ("/healthz") or a port
// (":5432", ":8080/healthz") aims at the instance itself; a full URL or
// host:port elsewhere is refused unless policy allows other targets, and
// link-local and cloud metadata addresses are refused always. The probe
// checks the resolved addresses again when it dials (ForbiddenCheckIP).
func CheckTarget(c Check, address string, port int, policy CheckPolicy) (string, error) {
	target := c.HTTP
	if c.TCP != "" {
		target = c.TCP
	}
	if len(target) > MaxCheckTargetBytes {
		return "", fmt.Errorf("%d bytes, at most %d allowed", len(target), MaxCheckTargetBytes)
	}
	if msg := checkText(target); msg != "" || strings.ContainsAny(target, " ") {
		return "", fmt.Errorf("%q must be a path, a :port or a URL without spaces or control characters", truncate(target))
	}
	host, resolved, err := resolveTarget(c, target, address, port)
	if err != nil {
		return "", err
	}
	if forbiddenHost(host) {
		return "", fmt.Errorf("%q is a link-local or cloud metadata address, which checks may never reach", truncate(host))
	}
	if !policy.AllowOtherTargets && !sameHost(host, address) {
		return "", fmt.Errorf("%q is not the instance's address %q: give a path or a :port (checks.allow_other_targets is off)", truncate(host), address)
	}
	return resolved, nil
}

// resolveTarget returns the host a target names and the target made
// absolute against the instance's address.
func resolveTarget(c Check, target, address string, port int) (host, resolved string, err error) {
	own := hostForJoin(address)
	if c.TCP != "" {
		if strings.HasPrefix(target, ":") {
			target = own + target
		}
		h, port, err := net.SplitHostPort(target)
		if err != nil || h == "" {
			return "", "", fmt.Errorf("%q must be :port or host:port", truncate(c.TCP))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("%q has no port in 1-65535", truncate(c.TCP))
		}
		return h, net.JoinHostPort(h, port), nil
	}
	switch {
	case strings.HasPrefix(target, "/"):
		target = "http://" + own + ":" + strconv.Itoa(port) + target
	case strings.HasPrefix(target, ":"):
		target = "http://" + own + target
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", "", fmt.Errorf("%q must be a path, :port/path or an http(s) URL", truncate(c.HTTP))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("%q has no port in 1-65535", truncate(c.HTTP))
		}
	}
	return u.Hostname(), u.String(), nil
}

// hostForJoin is the instance's address as the host of a URL or of
// host:port: an IPv6 address in brackets, its zone escaped.
func hostForJoin(address string) string {
	if strings.Contains(address, ":") {
		return "[" + strings.ReplaceAll(address, "%", "%25") + "]"
	}
	return address
}

func sameHost(host, address string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	address = strings.TrimSuffix(strings.ToLower(address), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		if b, err := netip.ParseAddr(address); err == nil {
			return a.WithZone("") == b.WithZone("")
		}
	}
	return host == address
}

// metadataNames are the host names of cloud metadata services.
var metadataNames = []string{
	"metadata", "metadata.google.internal", "metadata.goog",
	"instance-data", "instance-data.ec2.internal", "metadata.azure.com",
	"metadata.tencentyun.com",
}

// metadataIPs are the cloud metadata services outside link-local space:
// AWS's IPv6 endpoint and Alibaba Cloud's.
var metadataIPs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// forbiddenHost reports whether a host name or address is one that checks
// may never reach.
func forbiddenHost(host string) bool {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if slices.Contains(metadataNames, name) {
		return true
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		return ForbiddenCheckIP(ip)
	}
	return false
}

// ForbiddenCheckIP reports whether a check may never reach ip: link-local
// (169.254.0.0/16, fe80::/10, which hold the cloud metadata services) and
// the metadata addresses outside it. Probes call it on every address they
// dial, so a DNS name cannot lead a check there.
func ForbiddenCheckIP(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || slices.Contains(metadataIPs, ip)
}
