package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// key describes one configuration key: its environment names, its flag
// and the Config field it fills.
type key struct {
	name   string   // dotted, as in the TOML file: "server.port"
	env    []string // names earlier releases used; the SAGA_ name is derived
	flag   string   // command-line flag without dashes; empty when none
	usage  string
	secret bool // masked by `saga config show` and in errors
	field  field
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
	{name: "registry.ttl", env: []string{"REGISTRATION_TTL"},
		field: durationField(func(c *Config) *time.Duration { return &c.Registry.TTL })},
	{name: "registry.heartbeat_interval", env: []string{"HEARTBEAT_INTERVAL"},
		field: durationField(func(c *Config) *time.Duration { return &c.Registry.HeartbeatInterval })},
	{name: "storage.path", env: []string{"SAGA_DATA_DIR"}, flag: "data-dir", usage: "keep the embedded store in `DIR`",
		field: stringField(func(c *Config) *string { return &c.Storage.Path })},
	{name: "redis.url", env: []string{"REDIS_URL"}, flag: "redis-url", usage: "use the Redis store at `URL`", secret: true,
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
	{name: "log.level", env: []string{"LOG_LEVEL"}, flag: "log-level", usage: "log at `LEVEL`: debug, info, warn or error",
		field: levelField(func(c *Config) *slog.Level { return &c.Log.Level })},
	{name: "log.format",
		field: stringField(func(c *Config) *string { return &c.Log.Format })},
	{name: "service.name", env: []string{"SERVICE_NAME"},
		field: stringField(func(c *Config) *string { return &c.Service.Name })},
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
// duration ("60s", "2m", "1m30s").
func parseDuration(raw any) (time.Duration, error) {
	errBad := errors.New("is not a duration (use 60, 60s or 2m)")
	switch v := raw.(type) {
	case int64:
		if v < 0 || v > math.MaxInt64/int64(time.Second) {
			return 0, errBad
		}
		return time.Duration(v) * time.Second, nil
	case string:
		s := strings.TrimSpace(v)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return parseDuration(n)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
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

func (f levelField) set(c *Config, raw any) error {
	errBad := errors.New("must be debug, info, warn or error")
	s, ok := raw.(string)
	if !ok {
		return errBad
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		*f(c) = slog.LevelDebug
	case "info":
		*f(c) = slog.LevelInfo
	case "warn", "warning":
		*f(c) = slog.LevelWarn
	case "error":
		*f(c) = slog.LevelError
	default:
		return errBad
	}
	return nil
}

func (f levelField) get(c *Config) string { return strings.ToLower(f(c).String()) }
