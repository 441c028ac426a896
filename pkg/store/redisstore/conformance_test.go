package redisstore_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Each server is emptied with FLUSHALL before every subtest, so the suite
// sees a fresh store each time without paying for a new process.
// The token suites (authtest) run on the same servers.
func TestConformance(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		admin := srv.Client()
		flush := func(t *testing.T) {
			if err := admin.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
		}
		runSuites(t, flush, redisstore.Options{URL: srv.URL()})
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
		flush := func(t *testing.T) {
			for _, n := range cluster.Nodes {
				if err := n.Client().FlushAll(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
			}
			drainClusterBus(t, cluster)
		}
		runSuites(t, flush, redisstore.Options{URL: cluster.URL()})
	})
}

// runSuites runs the registry and token suites on one Redis, which flush
// empties before each subtest.
func runSuites(t *testing.T, flush func(t *testing.T), opts redisstore.Options) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		flush(t)
		return open(t, opts)
	})
	authtest.Run(t, func(t *testing.T) auth.Store {
		flush(t)
		return open(t, opts)
	})
	authtest.RunShared(t, func(t *testing.T) (auth.Store, auth.Store) {
		flush(t)
		return open(t, opts), open(t, opts)
	})
}

// drainClusterBus waits until every node has forwarded to every other the
// notices published so far. The cluster bus forwards a PUBLISH a little
// later; without the wait, a notice of the previous subtest's store can
// reach the next subtest's fresh store. Each link between two nodes keeps
// order, so a marker published on every node, once heard on every node,
// comes after all of them.
func drainClusterBus(t *testing.T, cluster *redistest.Cluster) {
	t.Helper()
	const channel = "service:changes"
	subs := make([]*goredis.PubSub, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		subs[i] = n.Client().Subscribe(t.Context(), channel)
		defer subs[i].Close()
		if _, err := subs[i].Receive(t.Context()); err != nil { // the confirmation
			t.Fatal(err)
		}
	}
	marker := "drain " + t.Name()
	for _, n := range cluster.Nodes {
		if err := n.Client().Publish(t.Context(), channel, marker).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, sub := range subs {
		for heard := 0; heard < len(cluster.Nodes); {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			msg, err := sub.ReceiveMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("node %d: waiting for the cluster bus: %v", i, err)
			}
			if msg.Payload == marker {
				heard++
			}
		}
	}
}
