package embedded

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
)

// benchClients is the number of concurrent writers of the register target
// (issue 2: ≥ 5,000 registers/s with 32 clients).
const benchClients = 32

// BenchmarkRegisterParallel registers new instances from 32 goroutines;
// each register is on disk (fsynced) before it returns, so the figure shows
// how well group commit shares fsyncs.
func BenchmarkRegisterParallel(b *testing.B) {
	s := benchStore(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("i", next.Add(1))
			if _, err := s.Register(b.Context(), registrytest.Instance("web", id, 60, t0)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
}

// BenchmarkHeartbeatParallel renews 1,000 instances round-robin; it touches
// memory only.
func BenchmarkHeartbeatParallel(b *testing.B) {
	const instances = 1000
	s := benchStore(b)
	fill(b, s, instances)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			now := t0.Add(time.Duration(n) * time.Microsecond)
			if _, err := s.Heartbeat(b.Context(), "web", fmt.Sprint("i", n%instances), "", now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHeapPerInstance measures the store's heap with 100,000 instances
// (two tags and two metadata keys each, as registrytest.Instance makes them);
// the target is under 1 KiB per instance. Run it with -benchtime=1x.
func BenchmarkHeapPerInstance(b *testing.B) {
	const instances = 100_000
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		s := benchStore(b)
		fill(b, s, instances)
		drain(s) // the daemon reads the feed; the events it held are not state

		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/instances, "heap-bytes/instance")
		b.StartTimer()
	}
}

// BenchmarkOpen reopens a data file of 100,000 instances: start-up time,
// including the full consistency check of the file.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	fill(b, s, 100_000)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := Open(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchStore(b *testing.B) *Store {
	s, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// fill registers n instances of "web" from many goroutines, so that group
// commit writes them in few transactions.
func fill(b *testing.B, s registry.Store, n int) {
	const writers = 256
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if _, err := s.Register(b.Context(), registrytest.Instance("web", fmt.Sprint("i", i), 60, t0)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func drain(s *Store) {
	for {
		select {
		case <-s.Changes():
		default:
			return
		}
	}
}
