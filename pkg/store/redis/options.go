package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/registry"
)

// Options configure the store. Only URL is required.
type Options struct {
	// URL is one of redis://[user:pass@]host:port[/db], rediss://… (TLS),
	// redis-sentinel://[pass@]h1:26379,h2:26379/mastername or
	// redis-cluster://[user:pass@]h1:6379,h2:6379.
	URL string
	// CAFile, CertFile, KeyFile and ServerName configure TLS for rediss://:
	// the CA to trust instead of the system's, a client certificate and key,
	// and the name to verify the server's certificate against.
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	// MinReplicasAck > 0 makes Register and Deregister wait (Redis WAIT) until
	// that many replicas have the change, at most AckTimeout (default 1 s).
	MinReplicasAck int
	AckTimeout     time.Duration
	// Clock dates the self-preservation grace granted after an outage;
	// the system clock when nil.
	Clock registry.Clock
}

// defaultAckTimeout bounds WAIT when Options.AckTimeout is zero.
const defaultAckTimeout = time.Second

// target is a parsed Redis URL.
type target struct {
	kind       targetKind
	addrs      []string
	username   string
	password   string
	db         int
	masterName string
	tls        bool
}

type targetKind int

const (
	standalone targetKind = iota
	sentinel
	cluster
)

// parseURL checks a Redis URL by hand rather than with net/url, because the
// Sentinel and Cluster forms carry a comma-separated host list. Errors name
// the part at fault and never repeat the password.
func parseURL(raw string) (target, error) {
	var t target
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return t, errors.New(`missing scheme: want redis://, rediss://, redis-sentinel:// or redis-cluster://`)
	}
	defaultPort := "6379"
	switch scheme {
	case "redis":
	case "rediss":
		t.tls = true
	case "redis-sentinel":
		t.kind, defaultPort = sentinel, "26379"
	case "redis-cluster":
		t.kind = cluster
	default:
		return t, fmt.Errorf("scheme %q is not one of redis, rediss, redis-sentinel, redis-cluster", scheme)
	}
	if strings.ContainsAny(rest, "?#") {
		return t, errors.New("query parameters and fragments are not supported")
	}
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		var err error
		if t.username, t.password, err = parseUserinfo(authority[:i]); err != nil {
			return t, err
		}
		authority = authority[i+1:]
	}
	if authority == "" {
		return t, errors.New("host is missing")
	}
	for _, hostport := range strings.Split(authority, ",") {
		addr, err := parseHostPort(hostport, defaultPort)
		if err != nil {
			return t, err
		}
		t.addrs = append(t.addrs, addr)
	}
	if t.kind == standalone && len(t.addrs) > 1 {
		return t, fmt.Errorf("%s:// takes one host; for several use redis-sentinel:// or redis-cluster://", scheme)
	}
	switch t.kind {
	case standalone:
		if path != "" {
			db, err := strconv.Atoi(path)
			if err != nil || db < 0 {
				return t, fmt.Errorf("database %q is not a number 0 or above", path)
			}
			t.db = db
		}
	case sentinel:
		if path == "" || strings.Contains(path, "/") {
			return t, fmt.Errorf("master name %q is missing or malformed: want redis-sentinel://h1:26379,h2:26379/mastername", path)
		}
		t.masterName = path
	case cluster:
		if path != "" {
			return t, fmt.Errorf("path %q: a Redis Cluster has no databases, so the URL takes no path", path)
		}
	}
	return t, nil
}

// parseUserinfo reads "user:pass", ":pass" or "pass" (a lone word is a
// password, as Redis's legacy AUTH takes it), percent-decoded.
func parseUserinfo(info string) (user, pass string, err error) {
	u, p, hasColon := strings.Cut(info, ":")
	if !hasColon {
		u, p = "", info
	}
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", errors.New("user name is not valid percent-encoding")
	}
	if pass, err = url.PathUnescape(p); err != nil {
		return "", "", errors.New("password is not valid percent-encoding")
	}
	return user, pass, nil
}

func parseHostPort(hostport, defaultPort string) (string, error) {
	if hostport == "" {
		return "", errors.New("empty host in host list")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port given: take the default one.
		host, port = strings.Trim(hostport, "[]"), defaultPort
		if strings.Contains(host, ":") && !strings.HasPrefix(hostport, "[") {
			return "", fmt.Errorf("host %q: put IPv6 addresses in brackets, like [::1]:6379", hostport)
		}
	}
	if host == "" {
		return "", fmt.Errorf("host %q: host name is missing", hostport)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number 1-65535", hostport, port)
	}
	return net.JoinHostPort(host, port), nil
}

// tlsConfig builds the TLS configuration from the options' files. It fails
// when a file cannot be read or TLS files are given for a plain-text URL.
func tlsConfig(t target, o Options) (*tls.Config, error) {
	hasFiles := o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != ""
	if !t.tls {
		if hasFiles {
			return nil, errors.New("TLS files or a server name are set but the URL is not rediss://")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(t.addrs[0])
		cfg.ServerName = host
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("a client certificate needs both a cert file and a key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Timeouts of every connection: short enough that an outage is noticed in a
// second or two, long enough for a loaded Redis.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
)

// minPoolSize is the least number of connections the client may open to one
// Redis server. go-redis's default, 10 per CPU, is 20 on a 2-core host: a
// burst of heartbeats larger than that queues for a connection, which cost
// a quarter of the heartbeat rate at 50 concurrent callers. Connections
// are opened only when needed, so an idle Saga holds few.
const minPoolSize = 64

// poolSize is the connection pool size per Redis server.
func poolSize() int { return max(minPoolSize, 10*runtime.GOMAXPROCS(0)) }

// newClient builds the go-redis client for t; it does not connect yet.
func newClient(t target, tlsCfg *tls.Config, o Options) goredis.UniversalClient {
	readTimeout := max(ioTimeout, o.AckTimeout+time.Second)
	switch t.kind {
	case sentinel:
		return goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:    t.masterName,
			SentinelAddrs: t.addrs,
			Username:      t.username,
			Password:      t.password,
			PoolSize:      poolSize(),
			DialTimeout:   dialTimeout,
			ReadTimeout:   readTimeout,
			WriteTimeout:  ioTimeout,
			TLSConfig:     tlsCfg,
			// A ping's own one-second deadline, not the read timeout,
			// decides how soon a frozen Redis is noticed.
			ContextTimeoutEnabled: true,
		})
	case cluster:
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:        t.addrs,
			Username:     t.username,
			Password:     t.password,
			PoolSize:     poolSize(),
			DialTimeout:  dialTimeout,
			ReadTimeout:  readTimeout,
			WriteTimeout: ioTimeout,
			TLSConfig:    tlsCfg,
			// See the failover client above.
			ContextTimeoutEnabled: true,
		})
	default:
		return goredis.NewClient(&goredis.Options{
			Addr:         t.addrs[0],
			Username:     t.username,
			Password:     t.password,
			DB:           t.db,
			PoolSize:     poolSize(),
			DialTimeout:  dialTimeout,
			ReadTimeout:  readTimeout,
			WriteTimeout: ioTimeout,
			TLSConfig:    tlsCfg,
			// See the failover client above.
			ContextTimeoutEnabled: true,
		})
	}
}
