package view

import (
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Big services (issue 8): one service of 200,000 instances, read again and
// again by 8 clients while its instances heartbeat, beside 100 services of
// one instance each. The goal is that lookups of the small services stay
// under 50 ms at p99 whatever the big one costs. These are benchmarks, not
// tests: they run only with -bench.
const (
	bigSize       = 200_000
	smallServices = 100
	bigReaders    = 8
	// heartbeatsPerTick, applied every millisecond, is about the rate of
	// 200,000 instances that heartbeat every 30 s.
	heartbeatsPerTick = 7
	// registerEvery is how often one more instance joins the big service.
	registerEvery = time.Second
	// smallEvery is the pace of the small lookups.
	smallEvery = time.Millisecond
	// heapEvery is how often the heap is sampled.
	heapEvery = 5 * time.Millisecond
	// writeChunk is what a big reader copies at a time, as a handler
	// writing the answer to its connection would.
	writeChunk = 64 << 10
)

// BenchmarkBigService measures lookups of small services beside a service
// of 200,000 instances (id, address, port, two tags, two metadata entries,
// a TTL of 60 s), in two settings:
//
//   - quiet: nothing else runs, the floor of the measurement;
//   - loaded: 8 goroutines read the big service with LookupJSON one lookup
//     after another, copying each answer once in 64 KiB chunks (the work of
//     writing it to a connection), while a writer applies about 7,000
//     heartbeats a second to it (each moves a deadline later) and registers
//     one more instance in it every second.
//
// Each iteration is one lookup of one of the 100 small services, made on a
// fixed schedule (one every millisecond) and timed from the moment it was
// due, so a reader held up for 100 ms counts as the hundred lookups it
// delayed rather than as one. Reported: the small lookups' p50, p99 and
// max; the big lookups' p50, p99 and max, whether answered from the cache,
// by sharing another reader's encoding or by encoding; the encodings made
// per second; the heartbeats applied per second (the writer waits for the
// view's lock like everyone else); the heap in use once the view is loaded
// and its peak during the run (sampled every 5 ms); and the p99 of the
// runtime's scheduling latency (how long runnable goroutines waited for a
// CPU). Run it for longer than the default second:
//
//	go test -run '^$' -bench BigService -benchtime 10s ./pkg/view
func BenchmarkBigService(b *testing.B) {
	b.Run("quiet", func(b *testing.B) { benchBigService(b, false) })
	b.Run("loaded", func(b *testing.B) { benchBigService(b, true) })
}

func benchBigService(b *testing.B, loaded bool) {
	v := New(registry.SystemClock{})
	ids := loadBig(v, bigSize)
	names := make([]string, smallServices)
	for i := range names {
		names[i] = smallName(i)
		v.LookupJSON(names[i], Query{}) // cached from now on: misses are the big service's
	}
	runtime.GC()
	loadedHeap := heapInUse()
	misses := v.Stats().Misses

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak atomic.Uint64
	peak.Store(loadedHeap)
	wg.Go(func() {
		tick := time.NewTicker(heapEvery)
		defer tick.Stop()
		for {
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	bigLatencies := make([][]time.Duration, bigReaders)
	var heartbeats atomic.Int64
	if loaded {
		for r := range bigReaders {
			wg.Go(func() { bigLatencies[r] = readBig(v, stop) })
		}
		wg.Go(func() { heartbeats.Store(writeBig(v, ids, stop)) })
	}
	sched := schedLatencies()

	small := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	due := time.Now()
	for i := 0; b.Loop(); i++ {
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if body, _ := v.LookupJSON(names[i%smallServices], Query{}); len(body) == 0 {
			b.Fatal("empty answer")
		}
		small = append(small, time.Since(due))
		due = due.Add(smallEvery)
	}
	b.StopTimer()
	elapsed := b.Elapsed()
	encodings := v.Stats().Misses - misses
	close(stop)
	wg.Wait()
	schedP99 := schedLatencies().since(sched).percentile(0.99)

	slices.Sort(small)
	b.ReportMetric(ms(percentile(small, 0.50)), "small-p50-ms")
	b.ReportMetric(ms(percentile(small, 0.99)), "small-p99-ms")
	b.ReportMetric(ms(percentile(small, 1)), "small-max-ms")
	if loaded {
		all := slices.Concat(bigLatencies...)
		slices.Sort(all)
		b.ReportMetric(ms(percentile(all, 0.50)), "big-p50-ms")
		b.ReportMetric(ms(percentile(all, 0.99)), "big-p99-ms")
		b.ReportMetric(ms(percentile(all, 1)), "big-max-ms")
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "big-lookups/s")
		b.ReportMetric(float64(encodings)/elapsed.Seconds(), "encodings/s")
		b.ReportMetric(float64(heartbeats.Load())/elapsed.Seconds(), "heartbeats/s")
	}
	b.ReportMetric(mb(loadedHeap), "loaded-heap-MB")
	b.ReportMetric(mb(peak.Load()), "peak-heap-MB")
	b.ReportMetric(schedP99*1e3, "sched-p99-ms")
	runtime.KeepAlive(v)
}

// readBig looks the big service up again and again until stop, copying
// each answer once, and returns the lookups' latencies.
func readBig(v *View, stop <-chan struct{}) []time.Duration {
	var latencies []time.Duration
	buf := make([]byte, writeChunk)
	for {
		select {
		case <-stop:
			return latencies
		default:
		}
		start := time.Now()
		body, _ := v.LookupJSON("big", Query{})
		latencies = append(latencies, time.Since(start))
		for off := 0; off < len(body); off += copy(buf, body[off:]) {
		}
	}
}

// writeBig renews deadlines in the big service round-robin, about 7,000 a
// second, and registers one more instance every second, until stop. It
// returns the heartbeats applied.
func writeBig(v *View, ids []string, stop <-chan struct{}) int64 {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	register := time.NewTicker(registerEvery)
	defer register.Stop()
	index := uint64(len(ids))
	var n int64
	for {
		select {
		case <-stop:
			return n
		case <-register.C:
			index++
			in := bigInstance("big", fmt.Sprintf("extra-%06d", index), int(index), time.Now().UTC())
			v.Apply(registry.Event{Type: registry.EventRegistered, Service: "big", Instance: in, Index: index})
		case <-tick.C:
			now := time.Now().UTC()
			for range heartbeatsPerTick {
				in := registry.Instance{
					Service: "big", ID: ids[n%int64(len(ids))],
					LastHeartbeat: now, ExpiresAt: now.Add(time.Minute),
				}
				v.Apply(registry.Event{Type: registry.EventHeartbeat, Service: "big", Instance: in})
				n++
			}
		}
	}
}

// BenchmarkViewHeapPerInstance measures the heap that the view holds per
// instance with 100,000 and 200,000 instances in one service (the
// instances of BenchmarkBigService): the difference in HeapAlloc after a
// full collection before building the snapshot and after loading it into
// a new view, with the snapshot dropped. B/instance is the view alone;
// B/instance-answered adds the service's full answer, encoded once and
// cached as the first lookup leaves it. Run it with -benchtime=1x.
func BenchmarkViewHeapPerInstance(b *testing.B) {
	for _, n := range []int{100_000, 200_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			for range b.N {
				before := liveHeap()
				v := New(registry.SystemClock{})
				v.Load(registry.Snapshot{Services: bigSnapshot(bigInstances("big", n, time.Now().UTC()))})
				held := liveHeap()
				body, _ := v.LookupJSON("big", Query{})
				answered := liveHeap()
				runtime.KeepAlive(v)
				b.ReportMetric(float64(held-before)/float64(n), "B/instance")
				b.ReportMetric(float64(answered-before)/float64(n), "B/instance-answered")
				b.ReportMetric(float64(len(body))/float64(n), "answer-B/instance")
			}
		})
	}
}

// loadBig loads the big service of n instances and the small services
// into v, and returns the big service's instance ids.
func loadBig(v *View, n int) []string {
	big := bigInstances("big", n, time.Now().UTC())
	v.Load(registry.Snapshot{Services: bigSnapshot(big)})
	ids := make([]string, len(big))
	for i, in := range big {
		ids[i] = in.ID
	}
	return ids
}

// bigInstances makes n instances of one service, registered at now.
func bigInstances(service string, n int, now time.Time) []registry.Instance {
	list := make([]registry.Instance, n)
	for i := range list {
		list[i] = bigInstance(service, fmt.Sprintf("%s-%06d", service, i), i, now)
	}
	return list
}

// bigInstance is one instance as a client registers it: every string its
// own, as decoding a request leaves them, two tags, two metadata entries
// and a TTL of 60 s.
func bigInstance(service, id string, i int, now time.Time) registry.Instance {
	return registry.Instance{
		Service:    service,
		ID:         id,
		Address:    fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		Port:       8000 + i%1000,
		Tags:       []string{strings.Clone("v2"), strings.Clone("http")},
		Metadata:   map[string]string{strings.Clone("zone"): fmt.Sprintf("zone-%d", i%3), strings.Clone("version"): fmt.Sprintf("2.4.%d", i%10)},
		TTLSeconds: 60, Status: registry.StatusPassing,
		RegisteredAt: now, LastHeartbeat: now, ExpiresAt: now.Add(time.Minute),
	}
}

// bigSnapshot holds the big service's instances and 100 services of one
// instance each.
func bigSnapshot(big []registry.Instance) map[string]registry.ServiceSnapshot {
	services := map[string]registry.ServiceSnapshot{
		big[0].Service: {Index: uint64(len(big)), Instances: big},
	}
	now := big[0].RegisteredAt
	for i := range smallServices {
		name := smallName(i)
		services[name] = registry.ServiceSnapshot{Index: 1, Instances: []registry.Instance{bigInstance(name, name+"-0", i, now)}}
	}
	return services
}

func smallName(i int) string { return fmt.Sprintf("small-%03d", i) }

// liveHeap is HeapAlloc after two full collections: the first leaves
// what sync.Pools held (encoding/json's encoder buffers) to the second.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// heapInUse is the runtime's HeapInuse, read without stopping the world.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// histogram is the runtime's histogram of scheduling latencies.
type histogram struct {
	counts  []uint64
	buckets []float64
}

func schedLatencies() histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	return histogram{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

// since is what was counted after earlier.
func (h histogram) since(earlier histogram) histogram {
	out := histogram{counts: slices.Clone(h.counts), buckets: h.buckets}
	for i := range out.counts {
		out.counts[i] -= earlier.counts[i]
	}
	return out
}

// percentile is the upper bound, in seconds, of the bucket that holds
// quantile p.
func (h histogram) percentile(p float64) float64 {
	var total uint64
	for _, c := range h.counts {
		total += c
	}
	want := uint64(math.Ceil(p * float64(total)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= want && seen > 0 {
			if upper := h.buckets[i+1]; !math.IsInf(upper, 1) {
				return upper
			}
			return h.buckets[i]
		}
	}
	return 0
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(float64(len(sorted))*p), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// BenchmarkCollectBig times what a lookup of the big service that
// is not cached does while it holds the view's lock exclusively: gathering
// the 200,000 matching instances (LookupJSON sorts and encodes them after
// it lets go). Every reader and writer of every service waits that long.
func BenchmarkCollectBig(b *testing.B) {
	v := New(registry.SystemClock{})
	loadBig(v, bigSize)
	svc := v.services["big"]
	b.ReportAllocs()
	for b.Loop() {
		v.mu.Lock()
		found, _ := collectLocked(svc, Query{}, v.liveNow())
		v.mu.Unlock()
		if len(found) != bigSize {
			b.Fatalf("%d instances", len(found))
		}
	}
}
