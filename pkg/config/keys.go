package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/redisstore/redisurl"
)

// key describes one configuration key: its environment names, its flag
// and the Config field it fills.
type key struct {
	name string   // dotted, as in the TOML file: "server.port"
	env  []string // names earlier releases used; the SAGA_ name is derived
	// envFormats reads the names of env whose values are spelt otherwise
	// than the key's (RUST_LOG for log.level).
	envFormats map[string]envFormat
	flag       string // command-line flag without dashes; empty when none
	usage      string
	// mask hides the secret part of a value, for `saga config show` and
	// errors; nil when the value holds no secret.
	mask  func(string) string
	field field
}

// field reads a raw value into a Config and renders it back. A raw value
// is a string from the environment or a flag, or whatever TOML gave.
type field interface {
	// set's error is the reason, worded to follow the value: "is not a port".
	set(c *Config, raw any) error
	get(c *Config) string
}

// keys lists every configuration key, in the order `saga config show`
// prints them.
var keys = []key{
	{name: "server.host", env: []string{"HOST"}, flag: "host", usage: "listen on `ADDRESS`",
		field: stringField(func(c *Config) *string { return &c.Server.Host })},
	{name: "server.port", env: []string{"PORT"}, flag: "port", usage: "listen on `PORT`; 0 picks a free one",
		field: portField(func(c *Config) *int { return &c.Server.Port })},
	{name: "server.shutdown_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Server.ShutdownTimeout })},
	{name: "server.protected_mode",
		field: boolField(func(c *Config) *bool { return &c.Server.ProtectedMode })},
	{name: "server.tls.cert_file",
		field: stringField(func(c *Config) *string { return &c.Server.TLS.CertFile })},
	{name: "server.tls.key_file",
		field: stringField(func(c *Config) *string { return &c.Server.TLS.KeyFile })},
	{name: "server.tls.client_ca_file",
		field: stringField(func(c *Config) *string { return &c.Server.TLS.ClientCAFile })},
	{name: "registry.ttl", env: []string{"REGISTRATION_TTL"},
		field: durationField(func(c *Config) *time.Duration { return &c.Registry.TTL })},
	{name: "registry.heartbeat_interval", env: []string{"HEARTBEAT_INTERVAL"},
		field: durationField(func(c *Config) *time.Duration { return &c.Registry.HeartbeatInterval })},
	{name: "storage.path", env: []string{"SAGA_DATA_DIR"}, flag: "data-dir", usage: "keep the embedded store in `DIR`",
		field: stringField(func(c *Config) *string { return &c.Storage.Path })},
	{name: "redis.url", env: []string{"REDIS_URL"}, flag: "redis-url", usage: "use the Redis store at `URL`", mask: redisurl.Mask,
		field: stringField(func(c *Config) *string { return &c.Redis.URL })},
	{name: "redis.tls.ca_file",
		field: stringField(func(c *Config) *string { return &c.Redis.TLS.CAFile })},
	{name: "redis.tls.cert_file",
		field: stringField(func(c *Config) *string { return &c.Redis.TLS.CertFile })},
	{name: "redis.tls.key_file",
		field: stringField(func(c *Config) *string { return &c.Redis.TLS.KeyFile })},
	{name: "redis.tls.server_name",
		field: stringField(func(c *Config) *string { return &c.Redis.TLS.ServerName })},
	{name: "redis.min_replicas_ack",
		field: intField(func(c *Config) *int { return &c.Redis.MinReplicasAck })},
	{name: "redis.ack_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Redis.AckTimeout })},
	{name: "log.level", env: []string{"LOG_LEVEL", "RUST_LOG"}, flag: "log-level", usage: "log at `LEVEL`: debug, info, warn or error",
		envFormats: map[string]envFormat{"RUST_LOG": rustLogLevel},
		field:      levelField(func(c *Config) *slog.Level { return &c.Log.Level })},
	{name: "log.format",
		field: stringField(func(c *Config) *string { return &c.Log.Format })},
	{name: "log.audit_file",
		field: stringField(func(c *Config) *string { return &c.Log.AuditFile })},
	{name: "service.name", env: []string{"SERVICE_NAME"},
		field: stringField(func(c *Config) *string { return &c.Service.Name })},
	{name: "auth.enabled",
		field: boolField(func(c *Config) *bool { return &c.Auth.Enabled })},
	{name: "auth.bootstrap_token_file",
		field: stringField(func(c *Config) *string { return &c.Auth.BootstrapTokenFile })},
	{name: "limits.read_rate",
		field: rateField(func(c *Config) *float64 { return &c.Limits.ReadRate })},
	{name: "limits.read_burst",
		field: intField(func(c *Config) *int { return &c.Limits.ReadBurst })},
	{name: "limits.write_rate",
		field: rateField(func(c *Config) *float64 { return &c.Limits.WriteRate })},
	{name: "limits.write_burst",
		field: intField(func(c *Config) *int { return &c.Limits.WriteBurst })},
	{name: "limits.max_blocking_queries",
		field: intField(func(c *Config) *int { return &c.Limits.MaxBlockingQueries })},
	{name: "limits.max_blocking_queries_per_client",
		field: intField(func(c *Config) *int { return &c.Limits.MaxBlockingQueriesPerClient })},
	{name: "limits.max_streams",
		field: intField(func(c *Config) *int { return &c.Limits.MaxStreams })},
	{name: "limits.max_streams_per_client",
		field: intField(func(c *Config) *int { return &c.Limits.MaxStreamsPerClient })},
	{name: "limits.max_instances",
		field: intField(func(c *Config) *int { return &c.Limits.MaxInstances })},
	{name: "limits.max_connections",
		field: intField(func(c *Config) *int { return &c.Limits.MaxConnections })},
	{name: "limits.header_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Limits.HeaderTimeout })},
	{name: "limits.body_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Limits.BodyTimeout })},
	{name: "limits.idle_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Limits.IdleTimeout })},
	{name: "limits.stream_write_timeout",
		field: durationField(func(c *Config) *time.Duration { return &c.Limits.StreamWriteTimeout })},
	{name: "dns.host",
		field: stringField(func(c *Config) *string { return &c.DNS.Host })},
	{name: "dns.port",
		field: portField(func(c *Config) *int { return &c.DNS.Port })},
	{name: "dns.domain",
		field: stringField(func(c *Config) *string { return &c.DNS.Domain })},
	{name: "dns.ttl",
		field: durationField(func(c *Config) *time.Duration { return &c.DNS.TTL })},
	{name: "ui.enabled",
		field: boolField(func(c *Config) *bool { return &c.UI.Enabled })},
	{name: "checks.allow_other_targets",
		field: boolField(func(c *Config) *bool { return &c.Checks.AllowOtherTargets })},
	{name: "checks.max_concurrent",
		field: intField(func(c *Config) *int { return &c.Checks.MaxConcurrent })},
}

// Keys returns every configuration key, in display order.
func Keys() []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	return names
}

// EnvNames returns the environment variables that set the key name, the
// one that wins first: the SAGA_ name, then the names earlier releases used.
func EnvNames(name string) []string {
	k, ok := keyByName(name)
	if !ok {
		return nil
	}
	return k.envNames()
}

// envNames derives the SAGA_ name from the key: dots become underscores.
func (k key) envNames() []string {
	return append([]string{"SAGA_" + strings.ToUpper(strings.ReplaceAll(k.name, ".", "_"))}, k.env...)
}

// envFormat turns the value of an environment variable that spells a key
// its own way into the key's spelling. sets is false when the value says
// nothing about the key; err is the reason, worded to follow the value.
type envFormat func(v string) (value string, sets bool, err error)

// envSets reports whether v, the value of the environment variable name,
// sets the key: one in a format of its own may be for other programs. A
// value that cannot be read sets it, so that Load reports it.
func (k key) envSets(name, v string) bool {
	format := k.envFormats[name]
	if format == nil {
		return true
	}
	_, sets, err := format(v)
	return sets || err != nil
}

// fromEnv returns raw in the key's spelling when src, the layer that won,
// is an environment variable with a format of its own.
func (k key) fromEnv(raw any, src Source) (any, error) {
	format := k.envFormats[src.Name]
	s, isString := raw.(string)
	if src.Layer != LayerEnv || format == nil || !isString {
		return raw, nil
	}
	v, _, err := format(s)
	return v, err
}

// masked returns s with its secret hidden.
func (k key) masked(s string) string {
	if k.mask == nil {
		return s
	}
	return k.mask(s)
}

func keyByName(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

type stringField func(*Config) *string

func (f stringField) set(c *Config, raw any) error {
	s, ok := raw.(string)
	if !ok {
		return errors.New("must be a string")
	}
	*f(c) = s
	return nil
}

func (f stringField) get(c *Config) string { return *f(c) }

type intField func(*Config) *int

func (f intField) set(c *Config, raw any) error {
	n, ok := toInt(raw)
	if !ok {
		return errors.New("is not a whole number")
	}
	*f(c) = n
	return nil
}

func (f intField) get(c *Config) string { return strconv.Itoa(*f(c)) }

type boolField func(*Config) *bool

func (f boolField) set(c *Config, raw any) error {
	switch v := raw.(type) {
	case bool:
		*f(c) = v
		return nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
			*f(c) = b
			return nil
		}
	}
	return errors.New("must be true or false")
}

func (f boolField) get(c *Config) string { return strconv.FormatBool(*f(c)) }

// rateField reads a rate in requests per second: a TOML number or a
// decimal string, not negative.
type rateField func(*Config) *float64

func (f rateField) set(c *Config, raw any) error {
	var v float64
	var err error
	switch r := raw.(type) {
	case int64:
		v = float64(r)
	case float64:
		v = r
	case string:
		v, err = strconv.ParseFloat(strings.TrimSpace(r), 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return errors.New("is not a rate (requests per second, 0 for unlimited)")
	}
	*f(c) = v
	return nil
}

func (f rateField) get(c *Config) string { return strconv.FormatFloat(*f(c), 'f', -1, 64) }

type portField func(*Config) *int

func (f portField) set(c *Config, raw any) error {
	n, ok := toInt(raw)
	if !ok || n < 0 || n > 65535 {
		return errors.New("is not a port")
	}
	*f(c) = n
	return nil
}

func (f portField) get(c *Config) string { return strconv.Itoa(*f(c)) }

// toInt accepts a TOML integer or a string of decimal digits.
func toInt(raw any) (int, bool) {
	switch v := raw.(type) {
	case int64:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return 0, false
		}
		return int(v), true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return n, err == nil
	}
	return 0, false
}

type durationField func(*Config) *time.Duration

func (f durationField) set(c *Config, raw any) error {
	d, err := parseDuration(raw)
	if err != nil {
		return err
	}
	*f(c) = d
	return nil
}

func (f durationField) get(c *Config) string { return formatDuration(*f(c)) }

// parseDuration accepts a bare number of seconds (60, "60") or a Go
// duration ("60s", "2m", "1m30s"): registry.ParseDuration, for the TOML
// integers too.
func parseDuration(raw any) (time.Duration, error) {
	errBad := errors.New("is not a duration (use 60, 60s or 2m)")
	switch v := raw.(type) {
	case int64:
		return parseDuration(strconv.FormatInt(v, 10))
	case string:
		d, err := registry.ParseDuration(v)
		if err != nil {
			return 0, errBad
		}
		return d, nil
	}
	return 0, errBad
}

// formatDuration renders whole seconds as "60s" rather than "1m0s", a form
// parseDuration reads back.
func formatDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

type levelField func(*Config) *slog.Level

// levelNames are the names log.level reads, in any case: slog's four, and
// the spellings of earlier releases: "warning", and "trace", read as debug
// because Saga logs nothing below debug.
var levelNames = map[string]slog.Level{
	"trace":   slog.LevelDebug,
	"debug":   slog.LevelDebug,
	"info":    slog.LevelInfo,
	"warn":    slog.LevelWarn,
	"warning": slog.LevelWarn,
	"error":   slog.LevelError,
}

func (f levelField) set(c *Config, raw any) error {
	s, ok := raw.(string)
	level, known := levelNames[strings.ToLower(strings.TrimSpace(s))]
	if !ok || !known {
		return errors.New("must be debug, info, warn or error")
	}
	*f(c) = level
	return nil
}

func (f levelField) get(c *Config) string { return levelName(*f(c)) }

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

// rustTarget is a Rust module path, the target of a RUST_LOG directive.
var rustTarget = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$`)

// rustLogLevel reads RUST_LOG, the env_logger filter that the Rust releases
// of Saga read, as a log level: comma-separated directives, each a level
// ("debug"), a target ("saga", all its levels) or both ("saga=debug").
// The most verbose directive for saga (or a module of it, "saga::api")
// wins, else the last bare level; trace is read as debug and off as error,
// the nearest levels Saga has. A filter with neither is for other programs
// and does not set the level.
func rustLogLevel(filter string) (string, bool, error) {
	const want = "is not a RUST_LOG filter Saga reads"
	var own, bare *slog.Level
	directives := 0
	for directive := range strings.SplitSeq(filter, ",") {
		directive = strings.TrimSpace(directive)
		if directive == "" {
			continue
		}
		directives++
		target, name, hasLevel := strings.Cut(directive, "=")
		target, name = strings.TrimSpace(target), strings.TrimSpace(name)
		if !hasLevel {
			if level, ok := rustLevel(directive); ok {
				bare = &level
				continue
			}
			if !isSagaTarget(directive) {
				return "", false, fmt.Errorf("%s: %q is neither a level (trace, debug, info, warn, error, off) nor the saga target", want, directive)
			}
			target, name = directive, "trace"
		}
		if !rustTarget.MatchString(target) {
			return "", false, fmt.Errorf("%s: directive %q: %q is not a target such as saga or saga::api", want, directive, target)
		}
		level, ok := rustLevel(name)
		if !ok {
			return "", false, fmt.Errorf("%s: directive %q: %q is not a level (trace, debug, info, warn, error, off)", want, directive, name)
		}
		if isSagaTarget(target) && (own == nil || level < *own) {
			own = &level
		}
	}
	switch {
	case own != nil:
		return levelName(*own), true, nil
	case bare != nil:
		return levelName(*bare), true, nil
	}
	if directives == 0 {
		return "", false, errors.New(want + ": it has no directive")
	}
	return "", false, nil
}

// rustLevel reads a level of RUST_LOG, in any case: one that log.level
// reads, or off.
func rustLevel(name string) (slog.Level, bool) {
	name = strings.ToLower(name)
	if name == "off" {
		return slog.LevelError, true
	}
	level, ok := levelNames[name]
	return level, ok
}

func isSagaTarget(target string) bool {
	return target == "saga" || strings.HasPrefix(target, "saga::")
}
