package redisstore

import (
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Options configure the store. Only URL is required.
type Options struct {
	// URL is one of redis://[user:pass@]host:port[/db], rediss://… (TLS),
	// redis-sentinel://[pass@]h1:26379,h2:26379/mastername or
	// redis-cluster://[user:pass@]h1:6379,h2:6379, as package redisurl
	// reads them.
	URL string
	// CAFile, CertFile, KeyFile and ServerName configure TLS for rediss://:
	// the CA to trust instead of the system's, a client certificate and key,
	// and the name to verify the server's certificate against.
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	// MinReplicasAck > 0 makes Register, Deregister and token writes wait
	// (Redis WAIT) until that many replicas have the change, at most
	// AckTimeout (default 1 s).
	MinReplicasAck int
	AckTimeout     time.Duration
	// Clock dates the self-preservation grace granted after an outage;
	// the system clock when nil.
	Clock registry.Clock
}

// defaultAckTimeout bounds WAIT when Options.AckTimeout is zero.
const defaultAckTimeout = time.Second
