package redisstore_test

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry/registrytest"
	"github.com/sagaproject/saga/pkg/store/redisstore"
	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// benchClients are the concurrencies measured: one client, and
// redis-benchmark's default of 50, so docs/redis.md can set the two side
// by side (redis-benchmark -t set -c 1 and -c 50).
var benchClients = []int{1, 50}

// benchStore opens a store on a fresh redis-server and drains its feed, as
// the daemon's pump would.
func benchStore(b *testing.B) *redisstore.Store {
	b.Helper()
	srv := redistest.Start(b)
	s, err := redisstore.Open(b.Context(), redisstore.Options{URL: srv.URL()}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	go func() {
		for range s.Changes() {
		}
	}()
	return s
}

// runClients spreads b.N operations over exactly clients goroutines, like
// redis-benchmark's -c; op gets the operation's sequence number.
func runClients(b *testing.B, clients int, op func(n int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				if err := op(n); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkHeartbeat renews 1000 instances: one EVALSHA each.
func BenchmarkHeartbeat(b *testing.B) {
	for _, clients := range benchClients {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s := benchStore(b)
			const instances = 1000
			now := time.Now().UTC()
			ids := make([]string, instances)
			for i := range ids {
				ids[i] = fmt.Sprintf("i%d", i)
				if _, err := s.Register(b.Context(), registrytest.Instance("bench", ids[i], 3600, now)); err != nil {
					b.Fatal(err)
				}
			}
			runClients(b, clients, func(n int64) error {
				_, err := s.Heartbeat(b.Context(), "bench", ids[n%instances], "", now)
				return err
			})
		})
	}
}

// BenchmarkRegister registers new instances, and replaces earlier ones,
// across ten services.
func BenchmarkRegister(b *testing.B) {
	for _, clients := range benchClients {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s := benchStore(b)
			now := time.Now().UTC()
			runClients(b, clients, func(n int64) error {
				_, err := s.Register(b.Context(), registrytest.Instance(fmt.Sprintf("svc%d", n%10), fmt.Sprintf("i%d", n%10000), 3600, now))
				return err
			})
		})
	}
}
