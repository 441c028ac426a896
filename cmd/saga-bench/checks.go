package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// The checks scenario (issue 12): -checked instances with HTTP checks
// every checkInterval against a target server this tool runs, and the
// lookup load beside them, against the same load with no checks.
const (
	checkInterval = 10 * time.Second
	// passingTimeout bounds the wait for every check's first pass.
	passingTimeout = 3 * time.Minute
	// userHZ is the unit of the CPU times in /proc/<pid>/stat: 100 on
	// every Linux that Go supports.
	userHZ = 100
)

// checksLoad is the checks scenario's state.
type checksLoad struct {
	service string
	lookup  *scenario // the lookup load, set up as the lookup scenario does
	target  *probeTarget
	checked int
	pid     int

	mu         sync.Mutex
	registered []string // the checked instances, for the cleanup
	notes      []string
}

// setupChecks starts the target server and the lookup load's service;
// measure registers the checked instances.
func setupChecks(ctx context.Context, saga *target, cfg config, service, runID string, sc *scenario) error {
	lookup, err := setupScenario(ctx, "lookup", saga, cfg, runID+"-checks")
	if err != nil {
		return err
	}
	pt, err := startProbeTarget(cfg.checked)
	if err != nil {
		lookup.cleanup()
		return err
	}
	c := &checksLoad{service: service, lookup: lookup, target: pt, checked: cfg.checked, pid: cfg.pid}
	sc.checks = c
	sc.cleanup = func() {
		c.deregister(ctx, saga, cfg.clients)
		pt.close()
		lookup.cleanup()
	}
	return nil
}

// measure runs the lookup load with no checks, registers the checked
// instances and waits until each has passed, measures the probes and
// Saga's CPU and memory with the checks alone, then the lookup load beside
// them, and finally the lookup load again once they are gone: the rows
// without checks merge the runs before and after.
func (c *checksLoad) measure(ctx context.Context, t *target, cfg config) ([]measured, error) {
	w := c.window()
	before := load(ctx, t, cfg, c.lookup.next, c.lookup.want)
	c.note("the lookup load before any check: %s", w.cpu())

	start := time.Now()
	if err := c.register(ctx, t, cfg.clients); err != nil {
		return nil, err
	}
	registered := time.Since(start)
	if err := c.waitPassing(ctx, t); err != nil {
		return nil, err
	}
	c.note("registered %d instances with %s HTTP checks in %s; all probed and passing %s after the first registration",
		c.checked, checkInterval, registered.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

	// Let the first probes, which came within a second of registration,
	// spread over the interval before measuring.
	settle := time.NewTimer(checkInterval)
	select {
	case <-ctx.Done():
		settle.Stop()
		return nil, ctx.Err()
	case <-settle.C:
	}
	w = c.window()
	time.Sleep(cfg.duration)
	c.note("checks alone: %s", w.end(ctx, t))

	w = c.window()
	with := load(ctx, t, cfg, c.lookup.next, c.lookup.want)
	c.note("checks beside the lookup load: %s", w.end(ctx, t))

	c.deregister(ctx, t, cfg.clients)
	w = c.window()
	after := load(ctx, t, cfg, c.lookup.next, c.lookup.want)
	c.note("the lookup load once the checked instances were gone: %s", w.cpu())
	without := merge([]result{before, after}, before.elapsed+after.elapsed, "req")
	if without.rate() > 0 {
		c.note("lookups with checks at %.0f %% of their rate without", 100*with.rate()/without.rate())
	}
	return []measured{
		{label: " (lookup, no checks)", res: without},
		{label: " (lookup, with checks)", res: with},
	}, nil
}

// register registers the checked instances with clients concurrent
// clients: each on the target's address, its check a path of its own.
func (c *checksLoad) register(ctx context.Context, t *target, clients int) error {
	var next atomic.Int64
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < c.checked && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				id := "checked-" + strconv.Itoa(i)
				_, err := t.api.Register(ctx, c.service, registry.Registration{
					ID: id, Address: c.target.host, Port: c.target.port,
					// A long TTL: the checker renews each deadline every
					// TTL/3, a store write that this scenario does not measure.
					TTLSeconds: benchTTL,
					Checks: []registry.Check{{
						HTTP: "/" + strconv.Itoa(i), Interval: checkInterval.String(), Timeout: "2s",
					}},
				})
				if err != nil {
					errs[w] = fmt.Errorf("register %s: %w", id, err)
					return
				}
				c.mu.Lock()
				c.registered = append(c.registered, id)
				c.mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// waitPassing waits until the target has seen every instance's probe and
// Saga counts every instance passing.
func (c *checksLoad) waitPassing(ctx context.Context, t *target) error {
	deadline := time.Now().Add(passingTimeout)
	for {
		seen := c.target.seenAll()
		passing := 0
		cat, err := t.api.Services(ctx, client.QueryOptions{})
		if err == nil {
			for _, s := range cat.Services {
				if s.Name == c.service {
					passing = s.Passing
				}
			}
		}
		switch {
		case seen && passing == c.checked:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("after %s, %d of %d instances passing (every target probed: %t)", passingTimeout, passing, c.checked, seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// deregister removes the checked instances registered so far.
func (c *checksLoad) deregister(ctx context.Context, t *target, clients int) {
	c.mu.Lock()
	ids := c.registered
	c.registered = nil
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second+time.Duration(len(ids))*2*time.Millisecond)
	defer cancel()
	deregister(ctx, t, c.service, ids, clients)
}

func (c *checksLoad) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// window is a measurement of the probes and Saga's CPU over a stretch of
// time.
type window struct {
	c        *checksLoad
	start    time.Time
	probes   int64
	startCPU float64 // Saga's CPU seconds; -1 when unknown
}

func (c *checksLoad) window() window {
	return window{c: c, start: time.Now(), probes: c.target.hits.Load(), startCPU: procCPU(c.pid)}
}

// end says what happened since the window started: the probes per second
// the target saw, Saga's CPU and its memory.
func (w window) end(ctx context.Context, t *target) string {
	elapsed := time.Since(w.start).Seconds()
	probes := float64(w.c.target.hits.Load()-w.probes) / elapsed
	want := float64(w.c.checked) / checkInterval.Seconds()
	return fmt.Sprintf("%.0f probes/s seen by the target (%.0f expected), %s, its RSS %s",
		probes, want, w.cpu(), megabytes(readMemory(ctx, t).rss))
}

// cpu says how much of a core Saga used since the window started.
func (w window) cpu() string {
	cpu := procCPU(w.c.pid)
	if cpu < 0 || w.startCPU < 0 {
		return "Saga's CPU unknown (give -pid)"
	}
	return fmt.Sprintf("Saga's CPU %.0f %% of a core", 100*(cpu-w.startCPU)/time.Since(w.start).Seconds())
}

// procCPU reads a process's CPU time (user and system), in seconds, from
// /proc/<pid>/stat (Linux); -1 when pid is 0 or it cannot be read.
func procCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64) // field 14 of stat(5)
	stime, err2 := strconv.ParseFloat(fields[12], 64) // field 15
	if err1 != nil || err2 != nil {
		return -1
	}
	return (utime + stime) / userHZ
}

// probeTarget is the HTTP server the checks probe: one listener on
// loopback, the path /<i> for checked instance i.
type probeTarget struct {
	host string
	port int
	srv  *http.Server
	hits atomic.Int64
	seen []atomic.Bool // by instance
}

func startProbeTarget(n int) (*probeTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("probe target: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	pt := &probeTarget{host: addr.IP.String(), port: addr.Port, seen: make([]atomic.Bool, n)}
	pt.srv = &http.Server{Handler: pt, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = pt.srv.Serve(ln) }()
	return pt, nil
}

// ServeHTTP counts a probe and answers 200.
func (pt *probeTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pt.hits.Add(1)
	if i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/")); err == nil && i >= 0 && i < len(pt.seen) {
		pt.seen[i].Store(true)
	}
	w.WriteHeader(http.StatusOK)
}

func (pt *probeTarget) seenAll() bool {
	for i := range pt.seen {
		if !pt.seen[i].Load() {
			return false
		}
	}
	return true
}

func (pt *probeTarget) close() { _ = pt.srv.Close() }
