// Package config loads Saga's configuration: built-in defaults, then a TOML
// file, then the environment, then command-line flags, each layer overriding
// the one before, into one typed Config. Every value remembers the layer
// that set it, so errors and `saga config show` can name it.
package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/redisstore/redisurl"
)

// Config is Saga's effective configuration.
type Config struct {
	Server   ServerConfig
	Registry RegistryConfig
	Storage  StorageConfig
	Redis    RedisConfig
	Log      LogConfig
	Service  ServiceConfig
	Auth     AuthConfig
	Limits   LimitsConfig
	DNS      DNSConfig
	UI       UIConfig
	Checks   ChecksConfig

	// File is the configuration file that was looked for, and FileFound
	// whether it existed. Both are empty when built by hand.
	File      string
	FileFound bool

	sources map[string]Source
}

// ServerConfig is where the HTTP API listens.
type ServerConfig struct {
	Host            string
	Port            int // 0 picks a free port
	ShutdownTimeout time.Duration
	// ProtectedMode answers clients that are not on a loopback address
	// with 403 while auth is off (SPEC §6).
	ProtectedMode bool
	TLS           ServerTLSConfig
}

// ServerTLSConfig turns on HTTPS on the API port when CertFile and KeyFile
// are set, and mTLS when ClientCAFile is set too.
type ServerTLSConfig struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// Enabled reports whether the API is served over TLS.
func (t ServerTLSConfig) Enabled() bool { return t.CertFile != "" }

// DNSConfig turns on the DNS interface (SPEC §8) when Port is set.
type DNSConfig struct {
	Host   string        // empty: server.host
	Port   int           // 0: no DNS server
	Domain string        // the zone served, ending in a dot: "saga."
	TTL    time.Duration // of every answer; 0, as Consul, so caches ask again
}

// DNSAddr is the host:port the DNS server listens on.
func (c *Config) DNSAddr() string {
	host := c.DNS.Host
	if host == "" {
		host = c.Server.Host
	}
	return hostPort(host, c.DNS.Port)
}

// UIConfig is the web console (SPEC §9).
type UIConfig struct {
	Enabled bool // served at /ui/ on the API's listener
}

// ChecksConfig governs the active health checks (SPEC §7).
type ChecksConfig struct {
	// AllowOtherTargets lets a check aim at a host other than its
	// instance's own address (link-local and metadata addresses stay
	// refused).
	AllowOtherTargets bool
	// MaxConcurrent bounds the probes in flight at once.
	MaxConcurrent int
}

// AuthConfig turns on tokens (SPEC §6).
type AuthConfig struct {
	Enabled bool
	// BootstrapTokenFile holds the secret of the first admin token, for
	// containers (a mounted Kubernetes Secret); empty: none.
	BootstrapTokenFile string
}

// LimitsConfig bounds what one client, and all of them together, may
// hold of the server (SPEC §6). A rate of 0 and a cap of 0 are unlimited.
type LimitsConfig struct {
	ReadRate   float64 // requests per second, per client
	ReadBurst  int
	WriteRate  float64 // requests per second, per client
	WriteBurst int

	MaxBlockingQueries          int // open at once, in total
	MaxBlockingQueriesPerClient int
	MaxStreams                  int // open event streams, in total
	MaxStreamsPerClient         int
	MaxInstances                int // instances held, in total

	// MaxConnections is the budget of open connections; past it, the
	// longest idle ones are closed. 0: derived from the descriptor limit.
	MaxConnections int

	HeaderTimeout      time.Duration // to send the request headers
	BodyTimeout        time.Duration // to send the request body
	IdleTimeout        time.Duration // a keep-alive connection left idle
	StreamWriteTimeout time.Duration // an event stream or answer not read
}

// RegistryConfig holds the TTL rules that clients are told about.
type RegistryConfig struct {
	TTL               time.Duration // for registrations that name none
	HeartbeatInterval time.Duration // advised to clients; shorter than TTL
}

// StorageConfig locates the embedded store.
type StorageConfig struct {
	Path string // empty: see DataDir
}

// RedisConfig selects the Redis store when URL is set.
type RedisConfig struct {
	URL            string
	TLS            RedisTLSConfig
	MinReplicasAck int
	AckTimeout     time.Duration
}

// RedisTLSConfig holds the files for rediss:// connections.
type RedisTLSConfig struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
}

// LogConfig chooses how much to log and how.
type LogConfig struct {
	Level  slog.Level
	Format string // auto, text or json
	// AuditFile receives the audit lines (SPEC §6) instead of the main
	// log; empty: the main log.
	AuditFile string
}

// ServiceConfig names this Saga in health reports and as an OS service.
type ServiceConfig struct {
	Name string
}

// Log formats.
const (
	FormatAuto = "auto" // text on a terminal, JSON otherwise
	FormatText = "text"
	FormatJSON = "json"
)

// Default returns the built-in defaults, the lowest layer.
func Default() Config {
	return Config{
		Server:   ServerConfig{Host: "127.0.0.1", Port: 8030, ShutdownTimeout: 10 * time.Second, ProtectedMode: true},
		Registry: RegistryConfig{TTL: registry.DefaultTTL, HeartbeatInterval: registry.DefaultHeartbeatInterval},
		Redis:    RedisConfig{AckTimeout: time.Second},
		Log:      LogConfig{Level: slog.LevelInfo, Format: FormatAuto},
		Service:  ServiceConfig{Name: "saga"},
		Limits:   DefaultLimits(),
		DNS:      DNSConfig{Domain: "saga."},
		UI:       UIConfig{Enabled: true},
		Checks:   ChecksConfig{MaxConcurrent: 256},
	}
}

// DefaultLimits are limits that a busy deployment does not reach and a
// runaway client does (docs/security.md explains each).
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		ReadRate: 500, ReadBurst: 1000,
		WriteRate: 200, WriteBurst: 400,
		MaxBlockingQueries: 10000, MaxBlockingQueriesPerClient: 1000,
		MaxStreams: 1000, MaxStreamsPerClient: 64,
		MaxInstances:  1000000,
		HeaderTimeout: 10 * time.Second, BodyTimeout: 30 * time.Second,
		IdleTimeout: 90 * time.Second, StreamWriteTimeout: 30 * time.Second,
	}
}

// Source reports which layer set key ("server.port"); the zero Source when
// the Config was not built by Load.
func (c *Config) Source(key string) Source { return c.sources[key] }

// Addr is the host:port to listen on.
func (c *Config) Addr() string {
	return hostPort(c.Server.Host, c.Server.Port)
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// Validate checks the rules that span more than one value's syntax. It
// returns an *Error naming the first key at fault.
func (c *Config) Validate() error {
	if !validHost(c.Server.Host) {
		return c.invalid("server.host", "is not an IP address or host name")
	}
	if c.Server.Port < 0 || c.Server.Port > 65535 {
		return c.invalid("server.port", "is not a port")
	}
	if c.Server.ShutdownTimeout < 0 {
		return c.invalid("server.shutdown_timeout", "must not be negative")
	}
	ttl := c.Registry.TTL
	if ttl < registry.MinTTLSeconds*time.Second || ttl > registry.MaxTTLSeconds*time.Second {
		return c.invalid("registry.ttl", fmt.Sprintf("must be between %ds and %ds", registry.MinTTLSeconds, registry.MaxTTLSeconds))
	}
	if ttl%time.Second != 0 {
		return c.invalid("registry.ttl", "must be whole seconds")
	}
	if c.Registry.HeartbeatInterval <= 0 {
		return c.invalid("registry.heartbeat_interval", "must be positive")
	}
	if c.Registry.HeartbeatInterval >= ttl {
		return c.invalid("registry.heartbeat_interval", fmt.Sprintf("must be shorter than registry.ttl (%s)", formatDuration(ttl)))
	}
	if err := c.validateRedis(); err != nil {
		return err
	}
	if c.Log.Format != FormatAuto && c.Log.Format != FormatText && c.Log.Format != FormatJSON {
		return c.invalid("log.format", "must be auto, text or json")
	}
	if err := registry.ValidateName("service.name", c.Service.Name); err != nil {
		return c.invalid("service.name", "must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.validateDNS(); err != nil {
		return err
	}
	if c.Checks.MaxConcurrent < 1 {
		return c.invalid("checks.max_concurrent", "must be at least 1")
	}
	return c.validateLimits()
}

func (c *Config) validateDNS() error {
	d := c.DNS
	if d.Host != "" && !validHost(d.Host) {
		return c.invalid("dns.host", "is not an IP address or host name")
	}
	if !strings.HasSuffix(d.Domain, ".") || d.Domain == "." || !registry.IsHostName(strings.TrimSuffix(d.Domain, ".")) {
		return c.invalid("dns.domain", `must be a domain name ending in a dot, such as "saga." or "consul."`)
	}
	if d.TTL < 0 || d.TTL%time.Second != 0 {
		return c.invalid("dns.ttl", "must be whole seconds, not negative")
	}
	if d.Port != 0 && d.Port == c.Server.Port && (d.Host == "" || d.Host == c.Server.Host) {
		// TCP would clash with the API; say so rather than fail to bind.
		return c.invalid("dns.port", "must differ from server.port")
	}
	return nil
}

func (c *Config) validateTLS() error {
	t := c.Server.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return c.invalid("server.tls.cert_file", "must be set together with server.tls.key_file")
		}
		return c.invalid("server.tls.key_file", "must be set together with server.tls.cert_file")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		return c.invalid("server.tls.client_ca_file", "needs server.tls.cert_file and server.tls.key_file")
	}
	return nil
}

func (c *Config) validateLimits() error {
	l := c.Limits
	for _, rate := range []struct {
		key   string
		value float64
	}{{"limits.read_rate", l.ReadRate}, {"limits.write_rate", l.WriteRate}} {
		if rate.value < 0 {
			return c.invalid(rate.key, "must not be negative")
		}
	}
	for _, n := range []struct {
		key   string
		value int
	}{
		{"limits.read_burst", l.ReadBurst}, {"limits.write_burst", l.WriteBurst},
		{"limits.max_blocking_queries", l.MaxBlockingQueries},
		{"limits.max_blocking_queries_per_client", l.MaxBlockingQueriesPerClient},
		{"limits.max_streams", l.MaxStreams}, {"limits.max_streams_per_client", l.MaxStreamsPerClient},
		{"limits.max_instances", l.MaxInstances}, {"limits.max_connections", l.MaxConnections},
	} {
		if n.value < 0 {
			return c.invalid(n.key, "must not be negative")
		}
	}
	if l.ReadRate > 0 && l.ReadBurst < 1 {
		return c.invalid("limits.read_burst", "must be at least 1 when limits.read_rate is set")
	}
	if l.WriteRate > 0 && l.WriteBurst < 1 {
		return c.invalid("limits.write_burst", "must be at least 1 when limits.write_rate is set")
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"limits.header_timeout", l.HeaderTimeout}, {"limits.body_timeout", l.BodyTimeout},
		{"limits.idle_timeout", l.IdleTimeout}, {"limits.stream_write_timeout", l.StreamWriteTimeout},
	} {
		if d.value <= 0 {
			return c.invalid(d.key, "must be positive")
		}
	}
	return nil
}

func (c *Config) validateRedis() error {
	r := c.Redis
	if r.URL != "" {
		if _, err := redisurl.Parse(r.URL); err != nil {
			return c.invalid("redis.url", "is not a Redis URL: "+err.Error())
		}
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		if r.TLS.CertFile == "" {
			return c.invalid("redis.tls.cert_file", "must be set together with redis.tls.key_file")
		}
		return c.invalid("redis.tls.key_file", "must be set together with redis.tls.cert_file")
	}
	if r.MinReplicasAck < 0 {
		return c.invalid("redis.min_replicas_ack", "must not be negative")
	}
	if r.AckTimeout <= 0 {
		return c.invalid("redis.ack_timeout", "must be positive")
	}
	return nil
}

// validHost reports whether host is an IP address or a host name.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return registry.IsHostName(host)
}

// invalid builds the error for key, quoting its current value and the layer
// that set it.
func (c *Config) invalid(key, reason string) error {
	e := &Error{Key: key, Reason: reason, Source: c.sources[key]}
	if k, ok := keyByName(key); ok {
		e.Value = display(k, k.field.get(c))
	}
	return e
}
