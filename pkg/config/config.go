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
		Server:   ServerConfig{Host: "127.0.0.1", Port: 8030, ShutdownTimeout: 10 * time.Second},
		Registry: RegistryConfig{TTL: registry.DefaultTTL, HeartbeatInterval: registry.DefaultHeartbeatInterval},
		Redis:    RedisConfig{AckTimeout: time.Second},
		Log:      LogConfig{Level: slog.LevelInfo, Format: FormatAuto},
		Service:  ServiceConfig{Name: "saga"},
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
