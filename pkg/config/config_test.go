package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// env is an injected environment for Load.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// loadFile loads path as --config, with only env as the environment.
func loadFile(t *testing.T, path string, e env, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	if path != "" {
		args = append([]string{"--config", path}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if e == nil {
		e = env{}
	}
	if _, ok := e["HOME"]; !ok {
		e["HOME"] = t.TempDir() // no ~/.saga/config.toml to find
	}
	return Load(Options{Getenv: e.get, Flags: fs})
}

// values strips what Load adds beyond the settings, for comparison.
func values(c Config) Config {
	c.sources, c.File, c.FileFound = nil, "", false
	return c
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := loadFile(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := values(*cfg), Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load with nothing set:\n got %+v\nwant %+v", got, want)
	}
	for _, s := range cfg.Settings() {
		if s.Source.Layer != LayerDefault {
			t.Errorf("%s: source %s, want default", s.Key, s.Source)
		}
	}
	if cfg.FileFound {
		t.Errorf("FileFound for %s, which does not exist", cfg.File)
	}
}

func TestGoodFiles(t *testing.T) {
	full := Default()
	full.Server = ServerConfig{Host: "0.0.0.0", Port: 9000, ShutdownTimeout: 30 * time.Second,
		TLS: ServerTLSConfig{CertFile: "/etc/saga/tls/cert.pem", KeyFile: "/etc/saga/tls/key.pem", ClientCAFile: "/etc/saga/tls/clients.pem"}}
	full.Auth = AuthConfig{Enabled: true, BootstrapTokenFile: "/run/secrets/saga-bootstrap"}
	full.Limits = LimitsConfig{
		ReadRate: 50.5, ReadBurst: 100, WriteRate: 0, WriteBurst: 10,
		MaxBlockingQueries: 100, MaxBlockingQueriesPerClient: 10, MaxStreams: 20, MaxStreamsPerClient: 2,
		MaxInstances: 5000, MaxConnections: 256,
		HeaderTimeout: 5 * time.Second, BodyTimeout: 15 * time.Second, IdleTimeout: time.Minute, StreamWriteTimeout: 20 * time.Second,
	}
	full.Registry = RegistryConfig{TTL: 120 * time.Second, HeartbeatInterval: time.Minute}
	full.Storage.Path = "/var/lib/saga-test"
	full.Redis = RedisConfig{
		URL: "rediss://app:s3cret@redis.example.com:6380/2", MinReplicasAck: 1, AckTimeout: 500 * time.Millisecond,
		TLS: RedisTLSConfig{CAFile: "/etc/saga/ca.pem", CertFile: "/etc/saga/client.pem", KeyFile: "/etc/saga/client-key.pem", ServerName: "redis.internal"},
	}
	full.Log = LogConfig{Level: slog.LevelDebug, Format: FormatJSON, AuditFile: "/var/log/saga/audit.log"}
	full.Service.Name = "saga-eu-1"

	partial := Default()
	partial.Server.Port = 8031
	partial.Log.Level = slog.LevelWarn

	sentinel := Default()
	sentinel.Redis.URL = "redis-sentinel://pw@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster"

	cluster := Default()
	cluster.Redis.URL = "redis-cluster://app:s3cret@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"

	tests := []struct {
		file string
		want Config
	}{
		{"full.toml", full},
		{"empty.toml", Default()},
		{"partial.toml", partial},
		{"sentinel.toml", sentinel},
		{"cluster.toml", cluster},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "good", tt.file)
			cfg, err := loadFile(t, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(*cfg); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("\n got %+v\nwant %+v", got, tt.want)
			}
			if !cfg.FileFound || cfg.File != path {
				t.Errorf("File = %q found=%v, want %q found", cfg.File, cfg.FileFound, path)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want string // FILE stands for the fixture's path
	}{
		{"unknown_key.toml", `config: server.prot: is not a known key; did you mean server.port? (from file FILE)`},
		{"unknown_section.toml", `config: cache.size: is not a known key (from file FILE)`},
		{"unknown_empty_section.toml", `config: cache: is not a known key (from file FILE)`},
		{"section_value.toml", `config: server: is not a known key (from file FILE)`},
		{"port_string.toml", `config: server.port: "abc" is not a port (from file FILE)`},
		{"port_range.toml", `config: server.port: 70000 is not a port (from file FILE)`},
		{"duration.toml", `config: registry.ttl: "soon" is not a duration (use 60, 60s or 2m) (from file FILE)`},
		{"ttl_zero.toml", `config: registry.ttl: "0s" must be between 1s and 86400s (from file FILE)`},
		{"heartbeat_long.toml", `config: registry.heartbeat_interval: "30s" must be shorter than registry.ttl (20s) (from default)`},
		{"level.toml", `config: log.level: "loud" must be debug, info, warn or error (from file FILE)`},
		{"format.toml", `config: log.format: "xml" must be auto, text or json (from file FILE)`},
		{"host_type.toml", `config: server.host: 5 must be a string (from file FILE)`},
		{"host.toml", `config: server.host: "bad host!" is not an IP address or host name (from file FILE)`},
		{"redis_scheme.toml", `config: redis.url: "http://user:****@example.com" is not a Redis URL: scheme "http" is not redis, rediss, redis-sentinel or redis-cluster (from file FILE)`},
		{"redis_sentinel_master.toml", `config: redis.url: "redis-sentinel://****@10.0.0.1:26379,10.0.0.2:26379" is not a Redis URL: the master name is missing: want redis-sentinel://h1:26379,h2:26379/mastername (from file FILE)`},
		{"redis_cluster_db.toml", `config: redis.url: "redis-cluster://app:****@10.0.0.1:6379,10.0.0.2:6379/0" is not a Redis URL: path "/0": a Redis Cluster has no databases, so the URL takes no path (from file FILE)`},
		{"tls_pair.toml", `config: redis.tls.key_file: "" must be set together with redis.tls.cert_file (from default)`},
		{"service_name.toml", `config: service.name: "my saga" must match [A-Za-z0-9][A-Za-z0-9._-]{0,127} (from file FILE)`},
		{"replicas.toml", `config: redis.min_replicas_ack: "-1" must not be negative (from file FILE)`},
		{"server_tls_pair.toml", `config: server.tls.key_file: "" must be set together with server.tls.cert_file (from default)`},
		{"rate.toml", `config: limits.read_rate: "fast" is not a rate (requests per second, 0 for unlimited) (from file FILE)`},
		{"protected_mode.toml", `config: server.protected_mode: "maybe" must be true or false (from file FILE)`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			_, err := loadFile(t, path, nil)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if want := strings.ReplaceAll(tt.want, "FILE", path); err.Error() != want {
				t.Fatalf("error\n got %s\nwant %s", err, want)
			}
			var cfgErr *Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestEveryBadFixtureIsTested(t *testing.T) {
	// A fixture dropped into testdata/bad without a table row would prove nothing.
	entries, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join("testdata", "bad", e.Name())
		if _, err := loadFile(t, path, nil); err == nil {
			t.Errorf("%s loads without error", path)
		}
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		want *regexp.Regexp
	}{
		{"syntax", filepath.Join("testdata", "bad", "syntax.toml"), regexp.MustCompile(`^config: file testdata/bad/syntax\.toml: line 1 column \d+: expected character \]$`)},
		{"named file missing", filepath.Join(dir, "nope.toml"), regexp.MustCompile(`^config: file .*/nope\.toml: no such file or directory$`)},
		{"a directory", dir, regexp.MustCompile(`^config: file .+: is a directory$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadFile(t, tt.path, nil)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !tt.want.MatchString(err.Error()) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not match %s", err, tt.want)
			}
		})
	}
}

func TestMissingDefaultFileIsFine(t *testing.T) {
	home := t.TempDir()
	cfg, err := loadFile(t, "", env{"HOME": home})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".saga", "config.toml"); cfg.File != want || cfg.FileFound {
		t.Fatalf("File = %q found=%v, want %q not found", cfg.File, cfg.FileFound, want)
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte("[server]\nport = 1001\nhost = \"127.0.0.2\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      env
		args     []string
		wantPort int
		wantFrom Source
	}{
		{"file over default", nil, nil, 1001, Source{LayerFile, file}},
		{"env over file", env{"SAGA_SERVER_PORT": "1002"}, nil, 1002, Source{LayerEnv, "SAGA_SERVER_PORT"}},
		{"legacy env over file", env{"PORT": "1004"}, nil, 1004, Source{LayerEnv, "PORT"}},
		{"SAGA_ name over legacy", env{"PORT": "1004", "SAGA_SERVER_PORT": "1002"}, nil, 1002, Source{LayerEnv, "SAGA_SERVER_PORT"}},
		{"flag over env", env{"SAGA_SERVER_PORT": "1002"}, []string{"--port", "1003"}, 1003, Source{LayerFlag, "port"}},
		{"empty env is unset", env{"SAGA_SERVER_PORT": ""}, nil, 1001, Source{LayerFile, file}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadFile(t, file, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Server.Port != tt.wantPort || cfg.Source("server.port") != tt.wantFrom {
				t.Fatalf("port %d from %s, want %d from %s", cfg.Server.Port, cfg.Source("server.port"), tt.wantPort, tt.wantFrom)
			}
			// A key that only the file sets keeps the file as its source.
			if cfg.Server.Host != "127.0.0.2" || cfg.Source("server.host") != (Source{LayerFile, file}) {
				t.Fatalf("host %q from %s, want 127.0.0.2 from the file", cfg.Server.Host, cfg.Source("server.host"))
			}
		})
	}
}

func TestEnvironmentNames(t *testing.T) {
	// Each key's SAGA_ name, and the names that earlier releases used.
	tests := []struct {
		name  string
		value string
		key   string
		want  string // the key's value as config show prints it
	}{
		{"SAGA_SERVER_HOST", "0.0.0.0", "server.host", "0.0.0.0"},
		{"HOST", "::1", "server.host", "::1"},
		{"SAGA_SERVER_PORT", "9001", "server.port", "9001"},
		{"PORT", "9002", "server.port", "9002"},
		{"SAGA_SERVER_SHUTDOWN_TIMEOUT", "2m", "server.shutdown_timeout", "120s"},
		{"SAGA_REGISTRY_TTL", "90", "registry.ttl", "90s"},
		{"REGISTRATION_TTL", "2m", "registry.ttl", "120s"},
		{"SAGA_REGISTRY_HEARTBEAT_INTERVAL", "5s", "registry.heartbeat_interval", "5s"},
		{"HEARTBEAT_INTERVAL", "10", "registry.heartbeat_interval", "10s"},
		{"SAGA_STORAGE_PATH", "/srv/saga", "storage.path", "/srv/saga"},
		{"SAGA_DATA_DIR", "/srv/saga2", "storage.path", "/srv/saga2"},
		{"SAGA_REDIS_URL", "redis://127.0.0.1:6379", "redis.url", "redis://127.0.0.1:6379"},
		{"REDIS_URL", "redis://:pw@127.0.0.1:6379", "redis.url", "redis://:****@127.0.0.1:6379"},
		{"SAGA_REDIS_TLS_CA_FILE", "/ca.pem", "redis.tls.ca_file", "/ca.pem"},
		{"SAGA_REDIS_TLS_SERVER_NAME", "r.internal", "redis.tls.server_name", "r.internal"},
		{"SAGA_REDIS_MIN_REPLICAS_ACK", "2", "redis.min_replicas_ack", "2"},
		{"SAGA_REDIS_ACK_TIMEOUT", "250ms", "redis.ack_timeout", "250ms"},
		{"SAGA_LOG_LEVEL", "debug", "log.level", "debug"},
		{"LOG_LEVEL", "error", "log.level", "error"},
		{"LOG_LEVEL", "trace", "log.level", "debug"},
		{"LOG_LEVEL", "Warning", "log.level", "warn"},
		{"RUST_LOG", "saga=debug", "log.level", "debug"},
		{"SAGA_LOG_FORMAT", "json", "log.format", "json"},
		{"SAGA_SERVICE_NAME", "saga-2", "service.name", "saga-2"},
		{"SERVICE_NAME", "saga-3", "service.name", "saga-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadFile(t, "", env{tt.name: tt.value})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range cfg.Settings() {
				if s.Key != tt.key {
					continue
				}
				if s.Value != tt.want || s.Source != (Source{LayerEnv, tt.name}) {
					t.Fatalf("%s = %q from %s, want %q from environment %s", s.Key, s.Value, s.Source, tt.want, tt.name)
				}
				return
			}
			t.Fatalf("no setting %s", tt.key)
		})
	}
}

// RUST_LOG, which the Rust releases read, sets log.level: the saga
// directive, else a bare level.
func TestRustLog(t *testing.T) {
	tests := []struct {
		value string
		want  string // log.level; "" when RUST_LOG does not set it
	}{
		{"saga=debug", "debug"},
		{"trace", "debug"},
		{"TRACE", "debug"},
		{"info", "info"},
		{"saga=warn", "warn"},
		{"saga=off", "error"},
		{"error", "error"},
		{"saga=debug,hyper=info", "debug"},
		{"hyper=info,saga=debug", "debug"},
		{"warn,saga=debug", "debug"},
		{"saga=error,warn", "error"},
		{" saga = trace , tower_http=debug ", "debug"},
		{"saga", "debug"},
		{"saga::api=debug,saga=info", "debug"},
		{"info,hyper=debug", "info"},
		{"hyper=debug", ""},
		{"hyper=debug,tokio::net=trace", ""},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := loadFile(t, "", env{"RUST_LOG": tt.value})
			if err != nil {
				t.Fatal(err)
			}
			wantLevel, wantFrom := tt.want, Source{LayerEnv, "RUST_LOG"}
			if tt.want == "" {
				wantLevel, wantFrom = "info", Source{LayerDefault, ""}
			}
			if got := levelName(cfg.Log.Level); got != wantLevel || cfg.Source("log.level") != wantFrom {
				t.Fatalf("log.level %s from %s, want %s from %s", got, cfg.Source("log.level"), wantLevel, wantFrom)
			}
		})
	}

	bad := []struct{ value, reason string }{
		{"saga=loud", `directive "saga=loud": "loud" is not a level (trace, debug, info, warn, error, off)`},
		{"verbose", `"verbose" is neither a level (trace, debug, info, warn, error, off) nor the saga target`},
		{"=debug", `directive "=debug": "" is not a target such as saga or saga::api`},
		{"saga[request]=debug", `directive "saga[request]=debug": "saga[request]" is not a target such as saga or saga::api`},
		{"hyper=debug,saga=", `directive "saga=": "" is not a level (trace, debug, info, warn, error, off)`},
		{" , ", "it has no directive"},
	}
	for _, tt := range bad {
		t.Run(tt.value, func(t *testing.T) {
			_, err := loadFile(t, "", env{"RUST_LOG": tt.value})
			want := `config: log.level: "` + tt.value + `" is not a RUST_LOG filter Saga reads: ` + tt.reason + ` (from environment RUST_LOG)`
			if err == nil || err.Error() != want {
				t.Fatalf("error\n got %v\nwant %s", err, want)
			}
		})
	}

	// The newer names win; a higher layer hides a RUST_LOG it overrides,
	// unreadable or not, as it does any other value.
	precedence := []struct {
		name     string
		env      env
		args     []string
		want     string
		wantFrom Source
	}{
		{"LOG_LEVEL over RUST_LOG", env{"RUST_LOG": "saga=debug", "LOG_LEVEL": "warn"}, nil, "warn", Source{LayerEnv, "LOG_LEVEL"}},
		{"SAGA_LOG_LEVEL over RUST_LOG", env{"RUST_LOG": "saga=loud", "SAGA_LOG_LEVEL": "error"}, nil, "error", Source{LayerEnv, "SAGA_LOG_LEVEL"}},
		{"flag over RUST_LOG", env{"RUST_LOG": "saga=loud"}, []string{"--log-level", "warn"}, "warn", Source{LayerFlag, "log-level"}},
	}
	for _, tt := range precedence {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadFile(t, "", tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := levelName(cfg.Log.Level); got != tt.want || cfg.Source("log.level") != tt.wantFrom {
				t.Fatalf("log.level %s from %s, want %s from %s", got, cfg.Source("log.level"), tt.want, tt.wantFrom)
			}
		})
	}

	// RUST_LOG overrides the file, unless it is for other programs.
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte("[log]\nlevel = \"error\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]string{"saga=debug": "debug", "hyper=debug": "error"} {
		cfg, err := loadFile(t, file, env{"RUST_LOG": value})
		if err != nil || levelName(cfg.Log.Level) != want {
			t.Errorf("file level error, RUST_LOG=%s: level %v, %v; want %s", value, cfg.Log.Level, err, want)
		}
	}
}

func TestEveryKeyHasItsSagaEnvName(t *testing.T) {
	for _, name := range Keys() {
		want := "SAGA_" + strings.ToUpper(strings.ReplaceAll(name, ".", "_"))
		if got := EnvNames(name); len(got) == 0 || got[0] != want {
			t.Errorf("EnvNames(%q) = %v, want %s first", name, got, want)
		}
	}
}

func TestValueErrorsNameKeyValueAndLayer(t *testing.T) {
	tests := []struct {
		env  env
		args []string
		want string
	}{
		{env{"SAGA_SERVER_PORT": "abc"}, nil, `config: server.port: "abc" is not a port (from environment SAGA_SERVER_PORT)`},
		{env{"PORT": "-1"}, nil, `config: server.port: "-1" is not a port (from environment PORT)`},
		{nil, []string{"--port", "abc"}, `config: server.port: "abc" is not a port (from flag --port)`},
		{env{"REGISTRATION_TTL": "forever"}, nil, `config: registry.ttl: "forever" is not a duration (use 60, 60s or 2m) (from environment REGISTRATION_TTL)`},
		{env{"SAGA_REGISTRY_TTL": "-5s"}, nil, `config: registry.ttl: "-5s" is not a duration (use 60, 60s or 2m) (from environment SAGA_REGISTRY_TTL)`},
		{env{"SAGA_REGISTRY_TTL": "1.5s"}, nil, `config: registry.ttl: "1.5s" must be whole seconds (from environment SAGA_REGISTRY_TTL)`},
		{env{"SAGA_REGISTRY_TTL": "25h"}, nil, `config: registry.ttl: "90000s" must be between 1s and 86400s (from environment SAGA_REGISTRY_TTL)`},
		{nil, []string{"--log-level", "verbose"}, `config: log.level: "verbose" must be debug, info, warn or error (from flag --log-level)`},
		{env{"SAGA_REDIS_MIN_REPLICAS_ACK": "two"}, nil, `config: redis.min_replicas_ack: "two" is not a whole number (from environment SAGA_REDIS_MIN_REPLICAS_ACK)`},
		{nil, []string{"--redis-url", "mysql://root:pw@db"}, `config: redis.url: "mysql://root:****@db" is not a Redis URL: scheme "mysql" is not redis, rediss, redis-sentinel or redis-cluster (from flag --redis-url)`},
		{nil, []string{"--redis-url", "redis://"}, `config: redis.url: "redis://" is not a Redis URL: the host is missing (from flag --redis-url)`},
		{env{"REDIS_URL": "redis-sentinel://h:26379"}, nil, `config: redis.url: "redis-sentinel://h:26379" is not a Redis URL: the master name is missing: want redis-sentinel://h1:26379,h2:26379/mastername (from environment REDIS_URL)`},
		{env{"RUST_LOG": "saga=loud"}, nil, `config: log.level: "saga=loud" is not a RUST_LOG filter Saga reads: directive "saga=loud": "loud" is not a level (trace, debug, info, warn, error, off) (from environment RUST_LOG)`},
		{env{"SAGA_REDIS_ACK_TIMEOUT": "0"}, nil, `config: redis.ack_timeout: "0s" must be positive (from environment SAGA_REDIS_ACK_TIMEOUT)`},
		{env{"SAGA_SERVER_HOST": "a..b"}, nil, `config: server.host: "a..b" is not an IP address or host name (from environment SAGA_SERVER_HOST)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := loadFile(t, "", tt.env, tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   any
		want time.Duration
	}{
		{"60", 60 * time.Second},
		{"60s", 60 * time.Second},
		{"2m", 2 * time.Minute},
		{" 90 ", 90 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{int64(45), 45 * time.Second},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseDuration(%#v) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := parseDuration(formatDuration(got)); err != nil || back != got {
			t.Errorf("formatDuration(%v) = %q does not read back", got, formatDuration(got))
		}
	}
	for _, bad := range []any{"", "soon", "-1s", int64(-1), 1.5, true} {
		if d, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%#v) = %v, want an error", bad, d)
		}
	}
}

func TestFilePath(t *testing.T) {
	tests := []struct {
		name      string
		env       env
		system    bool
		args      []string
		want      string
		wantNamed bool
	}{
		{"user", env{"HOME": "/home/ann"}, false, nil, "/home/ann/.saga/config.toml", false},
		{"system", env{"HOME": "/root"}, true, nil, "/etc/saga/config.toml", false},
		{"SAGA_CONFIG_DIR beats system", env{"HOME": "/root", "SAGA_CONFIG_DIR": "/opt/saga"}, true, nil, "/opt/saga/config.toml", false},
		{"--config beats all", env{"SAGA_CONFIG_DIR": "/opt/saga"}, true, []string{"--config", "/tmp/x.toml"}, "/tmp/x.toml", true},
		{"no home", env{}, false, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, named := FilePath(Options{Getenv: tt.env.get, Flags: fs, System: tt.system})
			if got != tt.want || named != tt.wantNamed {
				t.Fatalf("FilePath = %q, %v; want %q, %v", got, named, tt.want, tt.wantNamed)
			}
		})
	}
}

func TestDataDir(t *testing.T) {
	tests := []struct {
		name string
		path string
		env  env
		want string
	}{
		{"storage.path wins", "/srv/saga", env{"STATE_DIRECTORY": "/var/lib/saga", "HOME": "/home/ann"}, "/srv/saga"},
		{"systemd", "", env{"STATE_DIRECTORY": "/var/lib/saga", "XDG_DATA_HOME": "/x", "HOME": "/home/ann"}, "/var/lib/saga"},
		{"systemd, several", "", env{"STATE_DIRECTORY": "/var/lib/saga:/var/lib/other"}, "/var/lib/saga"},
		{"XDG", "", env{"XDG_DATA_HOME": "/home/ann/.data", "HOME": "/home/ann"}, "/home/ann/.data/saga"},
		{"home", "", env{"HOME": "/home/ann"}, "/home/ann/.local/share/saga"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.Storage.Path = tt.path
			got, err := cfg.DataDir(tt.env.get)
			if err != nil || got != tt.want {
				t.Fatalf("DataDir = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	cfg := Default()
	if _, err := cfg.DataDir(env{}.get); err == nil || !strings.Contains(err.Error(), "storage.path") {
		t.Fatalf("DataDir with no env = %v, want an error naming storage.path", err)
	}
}

// TestDefaultFile proves the shipped file cannot drift from the code: it
// loads cleanly as it is, and with every commented setting switched on it
// still gives exactly the defaults and names every key once.
func TestDefaultFile(t *testing.T) {
	dir := t.TempDir()
	asShipped := filepath.Join(dir, "shipped.toml")
	if err := os.WriteFile(asShipped, []byte(DefaultFile), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadFile(t, asShipped, nil)
	if err != nil {
		t.Fatalf("shipped file: %v", err)
	}
	if !reflect.DeepEqual(values(*cfg), Default()) {
		t.Fatalf("shipped file changes the defaults: %+v", values(*cfg))
	}

	setting := regexp.MustCompile(`(?m)^# ([a-z_]+ = .*)$`)
	uncommented := setting.ReplaceAllString(DefaultFile, "$1")
	allOn := filepath.Join(dir, "all-on.toml")
	if err := os.WriteFile(allOn, []byte(uncommented), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadFile(t, allOn, nil)
	if err != nil {
		t.Fatalf("file with every setting on: %v", err)
	}
	if !reflect.DeepEqual(values(*cfg), Default()) {
		t.Fatalf("the file's commented values are not the defaults: %+v", values(*cfg))
	}
	for _, s := range cfg.Settings() {
		if s.Source.Layer != LayerFile {
			t.Errorf("%s is not in the default file", s.Key)
		}
	}
	if n, want := len(setting.FindAllString(DefaultFile, -1)), len(Keys()); n != want {
		t.Errorf("default file has %d settings, want one per key (%d)", n, want)
	}
}

func TestWriteDefaultFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config.toml")
	if err := WriteDefaultFile(path, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteDefaultFile(path, false)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second write = %v, want a refusal mentioning --force", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "# edited\n" {
		t.Fatalf("refused write changed the file to %q", b)
	}
	if err := WriteDefaultFile(path, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != DefaultFile {
		t.Fatal("forced write did not write the default file")
	}
}

func TestValidateByHand(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	cfg.Registry.HeartbeatInterval = 0
	err := cfg.Validate()
	want := `config: registry.heartbeat_interval: "0s" must be positive`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %s", err, want)
	}
}

func TestAddr(t *testing.T) {
	cfg := Default()
	if got := cfg.Addr(); got != "127.0.0.1:8030" {
		t.Errorf("Addr = %q", got)
	}
	cfg.Server.Host = "::1"
	if got := cfg.Addr(); got != "[::1]:8030" {
		t.Errorf("Addr = %q", got)
	}
}

// TestConfigurationDoc keeps docs/configuration.md honest: it names every
// key with every environment name, and its examples load.
func TestConfigurationDoc(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, name := range Keys() {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(name) + "` \\|.*$").FindString(doc)
		if row == "" {
			t.Errorf("the key table has no row for %s", name)
			continue
		}
		for _, env := range EnvNames(name) {
			if !strings.Contains(row, "`"+env+"`") {
				t.Errorf("the row of %s does not name %s", name, env)
			}
		}
	}

	blocks := regexp.MustCompile("(?s)```(toml|sh)\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(blocks))
	}
	for i, block := range blocks {
		switch block[1] {
		case "toml":
			path := filepath.Join(t.TempDir(), "example.toml")
			if err := os.WriteFile(path, []byte(block[2]), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := loadFile(t, path, nil); err != nil {
				t.Errorf("toml example %d: %v", i, err)
			}
		case "sh":
			e := env{}
			for line := range strings.Lines(block[2]) {
				name, value, _ := strings.Cut(strings.TrimSpace(line), "=")
				e[name] = value
			}
			if _, err := loadFile(t, "", e); err != nil {
				t.Errorf("environment example %d: %v", i, err)
			}
		}
	}
}

func TestChangedKeys(t *testing.T) {
	a, b := Default(), Default()
	if got := a.ChangedKeys(&b); len(got) != 0 {
		t.Fatalf("ChangedKeys of equal configs = %v", got)
	}
	a.Redis.URL = "redis://:old@h:6379"
	b.Redis.URL = "redis://:new@h:6379" // masks the same
	b.Log.Level = slog.LevelDebug
	if got, want := a.ChangedKeys(&b), []string{"redis.url", "log.level"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ChangedKeys = %v, want %v", got, want)
	}
}
