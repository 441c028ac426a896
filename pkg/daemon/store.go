package daemon

import (
	"context"

	"github.com/sagaproject/saga/pkg/checks"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/store/embedded"
	"github.com/sagaproject/saga/pkg/store/redisstore"
)

// Storage names, as the health report shows them.
const (
	StorageEmbedded = "embedded"
	StorageRedis    = "redis"
)

// openStore opens the Redis store when redis.url is set, else the embedded
// store in the data directory.
func (d *Daemon) openStore(ctx context.Context) (registry.Store, string, error) {
	if r := d.cfg.Redis; r.URL != "" {
		// go-redis otherwise prints every failed dial to stderr itself;
		// the store already logs one line per back-off step.
		redisstore.RouteClientLogs(d.logger)
		s, err := redisstore.Open(ctx, redisstore.Options{
			URL:            r.URL,
			CAFile:         r.TLS.CAFile,
			CertFile:       r.TLS.CertFile,
			KeyFile:        r.TLS.KeyFile,
			ServerName:     r.TLS.ServerName,
			MinReplicasAck: r.MinReplicasAck,
			AckTimeout:     r.AckTimeout,
			Clock:          d.clock,
		}, d.logger)
		if err != nil {
			return nil, StorageRedis, err
		}
		return s, StorageRedis, nil
	}
	dir, err := d.cfg.DataDir(d.opts.Getenv)
	if err != nil {
		return nil, StorageEmbedded, err
	}
	s, err := embedded.Open(dir, d.logger)
	if err != nil {
		return nil, StorageEmbedded, err
	}
	return s, StorageEmbedded, nil
}

// members is the store's membership of the Sagas that share its checks
// (the Redis store's); nil for a store that one Saga holds alone.
func members(s registry.Store) checks.Membership {
	if m, ok := s.(checks.Membership); ok {
		return m
	}
	return nil
}
