package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/store/redisstore/redisurl"
)

// tlsConfig builds the TLS configuration from the options' files. It fails
// when a file cannot be read or TLS files are given for a plain-text URL.
func tlsConfig(t redisurl.URL, o Options) (*tls.Config, error) {
	hasFiles := o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != ""
	if !t.TLS {
		if hasFiles {
			return nil, errors.New("TLS files or a server name are set but the URL is not rediss://")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(t.Addrs[0])
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

// protocol is the RESP version the clients speak. The store uses nothing
// of RESP3 (push notifications, client-side caching), and on RESP3 go-redis
// looks for pending push notifications around every command, which cost
// the heartbeat path a few percent of Saga's CPU.
const protocol = 2

// newClient builds the go-redis client for t; it does not connect yet.
func newClient(t redisurl.URL, tlsCfg *tls.Config, o Options) goredis.UniversalClient {
	readTimeout := max(ioTimeout, o.AckTimeout+time.Second)
	switch t.Kind {
	case redisurl.Sentinel:
		return goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:    t.MasterName,
			SentinelAddrs: t.Addrs,
			Username:      t.Username,
			Password:      t.Password,
			Protocol:      protocol,
			PoolSize:      poolSize(),
			DialTimeout:   dialTimeout,
			ReadTimeout:   readTimeout,
			WriteTimeout:  ioTimeout,
			TLSConfig:     tlsCfg,
			// A ping's own one-second deadline, not the read timeout,
			// decides how soon a frozen Redis is noticed.
			ContextTimeoutEnabled: true,
		})
	case redisurl.Cluster:
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:        t.Addrs,
			Username:     t.Username,
			Password:     t.Password,
			Protocol:     protocol,
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
			Addr:         t.Addrs[0],
			Username:     t.Username,
			Password:     t.Password,
			DB:           t.DB,
			Protocol:     protocol,
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

// RouteClientLogs sends go-redis's own log lines (one per failed dial,
// among others) to logger at debug level instead of standard error, so an
// outage shows up as the store's one line per back-off step. go-redis keeps
// its logger in a global, so this is for main (the daemon) to call once,
// not something Open does behind its caller's back.
func RouteClientLogs(logger *slog.Logger) {
	goredis.SetLogger(clientLogger{logger.With("component", "go-redis")})
}

type clientLogger struct{ logger *slog.Logger }

func (l clientLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...))
}
