package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sagaproject/saga/pkg/registry"
)

// The big scenario (issue 8): one service of -instances instances read
// again and again by -readers clients while it heartbeats, beside a
// service of one instance whose lookups must stay fast.
const (
	// smallEvery is the pace of the small service's lookups.
	smallEvery = 10 * time.Millisecond
	// bigRegisterEvery is how often one more instance joins the big service
	// during the run.
	bigRegisterEvery = time.Second
	// memoryEvery is how often the server's memory is read from /metrics.
	memoryEvery = 500 * time.Millisecond
)

// bigLoad is the big scenario's state on the server.
type bigLoad struct {
	service, small string
	ids            []string     // the big service's instances, for the heartbeats
	extra          atomic.Int64 // instances registered during the run
	pid            int          // the server's process, 0 when not known
	rested         memory       // the server's, once the instances are in
	notes          []string     // what the report prints after its table
}

// setupBig registers the big service's instances with -c concurrent
// clients, and the small service's one. On failure it removes what it
// registered.
func setupBig(ctx context.Context, saga *target, cfg config, service string, sc *scenario) (err error) {
	b := &bigLoad{service: service, small: service + "-small", pid: cfg.pid}
	b.ids = make([]string, cfg.instances)
	for i := range b.ids {
		b.ids[i] = "big-" + strconv.Itoa(i)
	}
	registered := make([]bool, len(b.ids))
	smallDone := false
	sc.cleanup = func() {
		if cfg.keep {
			return
		}
		var ids []string
		for i, id := range b.ids {
			if registered[i] {
				ids = append(ids, id)
			}
		}
		for i := range b.extra.Load() {
			ids = append(ids, "extra-"+strconv.FormatInt(i+1, 10))
		}
		timeout := 30*time.Second + time.Duration(len(ids))*2*time.Millisecond
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		deregister(ctx, saga, service, ids, cfg.clients)
		if smallDone {
			_ = saga.api.Deregister(ctx, b.small, "small-0")
		}
	}

	defer func() {
		if err != nil {
			sc.cleanup()
		}
	}()
	before := readMemory(ctx, saga)
	if _, err := saga.api.Register(ctx, b.small, bigRegistration("small-0", 0)); err != nil {
		return err
	}
	smallDone = true
	start := time.Now()
	var next atomic.Int64
	errs := make([]error, cfg.clients)
	var wg sync.WaitGroup
	for w := range cfg.clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(b.ids) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if _, err := saga.api.Register(ctx, service, bigRegistration(b.ids[i], i)); err != nil {
					errs[w] = fmt.Errorf("register %s: %w", b.ids[i], err)
					return
				}
				registered[i] = true
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	took := time.Since(start)
	b.rested = readMemory(ctx, saga)
	b.notes = append(b.notes, fmt.Sprintf("registered %d instances with %d clients in %s (%.0f/s); the server's RSS %s before, %s after",
		len(b.ids), cfg.clients, took.Round(100*time.Millisecond), float64(len(b.ids))/took.Seconds(), megabytes(before.rss), megabytes(b.rested.rss)))
	sc.big = b
	return nil
}

// bigRegistration is one instance of the big scenario: two tags, two
// metadata entries, an address and a port of its own.
func bigRegistration(id string, i int) registry.Registration {
	return registry.Registration{
		ID:         id,
		Address:    fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		Port:       8000 + i%1000,
		Tags:       []string{"v2", "http"},
		Metadata:   map[string]string{"zone": "zone-" + strconv.Itoa(i%3), "version": "2.4." + strconv.Itoa(i%10)},
		TTLSeconds: benchTTL,
	}
}

// deregister removes ids from service with clients concurrent clients,
// ignoring failures: it cleans up after a run.
func deregister(ctx context.Context, saga *target, service string, ids []string, clients int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(ids) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				_ = saga.api.Deregister(ctx, service, ids[i])
			}
		})
	}
	wg.Wait()
}

// measure runs the load, first for the warm-up, unmeasured, then for the
// measured duration: -readers clients read the big service one lookup
// after another; one client renews its instances round-robin, one
// heartbeat after another; one registers a new instance in it every
// second; and the small service is looked up every 10 ms, each lookup
// sent on time whether or not the one before has its answer.
func (b *bigLoad) measure(ctx context.Context, t *target, cfg config) ([]measured, error) {
	if cfg.warmup > 0 {
		b.run(ctx, t, cfg, cfg.warmup)
	}
	rows, peak := b.run(ctx, t, cfg, cfg.duration)
	note := fmt.Sprintf("the server's memory: RSS %s and heap in use %s once the instances were in; peaks during the measured run (read from /metrics every %s): RSS %s, heap in use %s",
		megabytes(b.rested.rss), megabytes(b.rested.heapInuse), memoryEvery, megabytes(peak.rss), megabytes(peak.heapInuse))
	if b.pid > 0 {
		if hwm, rss, err := procMemory(b.pid); err == nil {
			note += fmt.Sprintf("; process %d: peak RSS since it started (VmHWM) %s, RSS now %s", b.pid, megabytes(hwm), megabytes(rss))
		} else {
			note += fmt.Sprintf("; process %d: %v", b.pid, err)
		}
	}
	b.notes = append(b.notes, note)
	return rows, nil
}

// run applies the load for d and returns its rows and the peak memory.
func (b *bigLoad) run(ctx context.Context, t *target, cfg config, d time.Duration) ([]measured, memory) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()

	bigPath := t.base + "/api/v1/services/" + b.service
	big := make([]result, cfg.readers)
	for r := range cfg.readers {
		wg.Go(func() {
			if cfg.readOnChange {
				big[r] = readOnChange(ctx, t, bigPath)
				return
			}
			big[r] = worker(ctx, t, r, func(string, int, int) (*http.Request, error) {
				return http.NewRequest(http.MethodGet, bigPath, nil)
			}, http.StatusOK)
		})
	}
	var heartbeats result
	var seq atomic.Int64
	pace := rate.NewLimiter(rate.Inf, 1)
	if cfg.heartbeatRate > 0 {
		pace = rate.NewLimiter(rate.Limit(cfg.heartbeatRate), 1)
	}
	wg.Go(func() {
		heartbeats = worker(ctx, t, 0, func(base string, _, _ int) (*http.Request, error) {
			if err := pace.Wait(ctx); err != nil {
				// The next heartbeat falls after the run's end: wait for it.
				<-ctx.Done()
				return nil, ctx.Err()
			}
			id := b.ids[int(seq.Add(1)-1)%len(b.ids)]
			return http.NewRequest(http.MethodPut, base+"/api/v1/services/"+b.service+"/instances/"+id+"/heartbeat", nil)
		}, http.StatusOK)
	})
	var registers result
	wg.Go(func() { registers = b.registerEvery(ctx, t) })
	var small result
	wg.Go(func() { small = paced(ctx, t, t.base+"/api/v1/services/"+b.small, smallEvery, d) })
	var peak memory
	wg.Go(func() {
		for {
			peak = peak.max(readMemory(ctx, t))
			select {
			case <-ctx.Done():
				return
			case <-time.After(memoryEvery):
			}
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	return []measured{
		{label: " (small service)", res: merge([]result{small}, elapsed, "req")},
		{label: " (big service)", res: merge(big, elapsed, "req")},
		{label: " (heartbeat)", res: merge([]result{heartbeats}, elapsed, "req")},
		{label: " (register)", res: merge([]result{registers}, elapsed, "req")},
	}, peak
}

// readOnChange reads url again after each change, as a watcher does: a
// blocking query from the index of the answer before. Its latencies are
// how long each blocking query took, the wait for the change included:
// the rate (answers a second, one per change) is the figure to read.
func readOnChange(ctx context.Context, t *target, url string) result {
	var r result
	index := ""
	for ctx.Err() == nil {
		u := url
		if index != "" {
			u += "?index=" + index + "&wait=30s"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			r.fail(err.Error())
			return r
		}
		header, took, err := fetch(t, req, http.StatusOK)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err.Error())
			}
			continue
		}
		r.ok++
		r.latencies = append(r.latencies, took)
		index = header.Get("X-Saga-Index")
	}
	return r
}

// registerEvery registers a new instance in the big service every second.
func (b *bigLoad) registerEvery(ctx context.Context, t *target) result {
	var r result
	tick := time.NewTicker(bigRegisterEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return r
		case <-tick.C:
		}
		n := b.extra.Add(1)
		start := time.Now()
		_, err := t.api.Register(ctx, b.service, bigRegistration("extra-"+strconv.FormatInt(n, 10), int(n)))
		switch {
		case err == nil:
			r.ok++
			r.latencies = append(r.latencies, time.Since(start))
		case ctx.Err() == nil:
			r.fail(err.Error())
		}
	}
}

// paced sends GET url on a fixed schedule, one request every every, each
// from a goroutine of its own, as independent clients would: a slow
// answer holds up no later request, and the requests still out when d
// ends are waited for (up to pacedGrace) and counted.
func paced(ctx context.Context, t *target, url string, every, d time.Duration) result {
	var (
		mu sync.Mutex
		r  result
		wg sync.WaitGroup
	)
	// The requests outlive the run by up to pacedGrace.
	reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d+pacedGrace)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.After(d)
	for {
		select {
		case <-ctx.Done():
		case <-end:
		case <-tick.C:
			wg.Go(func() {
				ok, took, msg := get(reqCtx, t, url)
				mu.Lock()
				defer mu.Unlock()
				if ok {
					r.ok++
					r.latencies = append(r.latencies, took)
				} else {
					r.fail(msg)
				}
			})
			continue
		}
		break
	}
	wg.Wait()
	return r
}

// pacedGrace is how long paced waits for its last requests.
const pacedGrace = 30 * time.Second

// get sends GET url and reads the whole answer: whether it was a 200, how
// long it took, and what went wrong.
func get(ctx context.Context, t *target, url string) (bool, time.Duration, string) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, 0, err.Error()
	}
	resp, err := t.do(req)
	if err != nil {
		return false, 0, err.Error()
	}
	err = drain(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	switch {
	case err != nil:
		return false, took, err.Error()
	case resp.StatusCode != http.StatusOK:
		return false, took, fmt.Sprintf("status %d, want %d", resp.StatusCode, http.StatusOK)
	}
	return true, took, ""
}

// memory is what /metrics says of the server's memory; zero when it
// could not be read.
type memory struct {
	rss       float64 // process_resident_memory_bytes
	heapInuse float64 // go_memstats_heap_inuse_bytes
}

func (m memory) max(o memory) memory {
	return memory{rss: max(m.rss, o.rss), heapInuse: max(m.heapInuse, o.heapInuse)}
}

// readMemory reads the server's memory from its /metrics.
func readMemory(ctx context.Context, t *target) memory {
	var m memory
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/metrics", nil)
	if err != nil {
		return m
	}
	resp, err := t.do(req)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.rss, _ = strconv.ParseFloat(value, 64)
		case "go_memstats_heap_inuse_bytes":
			m.heapInuse, _ = strconv.ParseFloat(value, 64)
		}
	}
	return m
}

// procMemory reads a process's peak and current RSS, in bytes, from
// /proc/<pid>/status (Linux).
func procMemory(pid int) (hwm, rss float64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read its memory: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read its memory: %s: %w", key, err)
		}
		if key == "VmHWM" {
			hwm = kb * 1024
		} else {
			rss = kb * 1024
		}
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("read its memory: no VmHWM in /proc/%d/status", pid)
	}
	return hwm, rss, nil
}

// megabytes formats bytes in MB (10^6), "?" when unknown.
func megabytes(b float64) string {
	if b <= 0 {
		return "?"
	}
	return strconv.FormatFloat(b/1e6, 'f', 0, 64) + " MB"
}
