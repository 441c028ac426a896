package redis_test

import (
	"testing"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redis"
	"github.com/sagaproject/saga/pkg/store/redis/redistest"
)

// Each server is emptied with FLUSHALL before every subtest, so the suite
// sees a fresh store each time without paying for a new process.
func TestConformance(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		admin := srv.Client()
		registrytest.Run(t, func(t *testing.T) registry.Store {
			if err := admin.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			return open(t, redis.Options{URL: srv.URL()})
		})
	})
	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		srv := redistest.StartTLS(t)
		admin := srv.Client()
		registrytest.Run(t, func(t *testing.T) registry.Store {
			if err := admin.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			return open(t, tlsOptions(srv))
		})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cluster := redistest.StartCluster(t)
		registrytest.Run(t, func(t *testing.T) registry.Store {
			for _, n := range cluster.Nodes {
				if err := n.Client().FlushAll(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
			}
			return open(t, redis.Options{URL: cluster.URL()})
		})
	})
}
