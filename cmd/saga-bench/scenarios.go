package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// benchTTL keeps the scenarios' instances alive through any run.
const benchTTL = 3600

// scenario is one kind of load, set up on the Saga server.
type scenario struct {
	next    requestFunc // the requests of a load scenario
	want    int         // the status they answer with
	watched string      // the service of the watch scenario
	big     *bigLoad    // the big scenario's services
	checks  *checksLoad // the checks scenario's instances and target
	lean    *leanLoad   // the lean scenario's clients
	answer  *answer     // what Saga answered, for the ceiling; nil when no ceiling applies
	cleanup func()
}

// answer is one captured HTTP answer.
type answer struct {
	Method string            `json:"method"`
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   []byte            `json:"body"`
}

// measured is one row of the report: a result and what it measured.
type measured struct {
	label string // appended to the scenario's name; empty for the main row
	res   result
}

func (s *scenario) measure(ctx context.Context, t *target, cfg config) ([]measured, error) {
	if s.watched != "" {
		return measureWatch(ctx, t, cfg, s.watched)
	}
	if s.big != nil {
		return s.big.measure(ctx, t, cfg)
	}
	if s.checks != nil {
		return s.checks.measure(ctx, t, cfg)
	}
	if s.lean != nil {
		return s.lean.measure(ctx, t, cfg)
	}
	return []measured{{res: load(ctx, t, cfg, s.next, s.want)}}, nil
}

// takeNotes returns what the scenario has to say beside its rows since it
// was last asked.
func (s *scenario) takeNotes() []string {
	var notes []string
	if s.big != nil {
		notes, s.big.notes = s.big.notes, nil
	}
	if s.checks != nil {
		notes, s.checks.notes = s.checks.notes, nil
	}
	if s.lean != nil {
		notes, s.lean.notes = s.lean.notes, nil
	}
	return notes
}

// setupScenario registers what the scenario needs and captures one real answer.
func setupScenario(ctx context.Context, name string, saga *target, cfg config, runID string) (*scenario, error) {
	service := "bench-" + name + "-" + runID
	var ids []string
	sc := &scenario{}
	sc.cleanup = func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, id := range ids {
			_ = saga.api.Deregister(ctx, service, id)
		}
	}
	register := func(id string, tags []string, meta map[string]string) error {
		_, err := saga.api.Register(ctx, service, registry.Registration{
			ID: id, Address: "10.0.0.1", Port: 8080, Tags: tags, Metadata: meta, TTLSeconds: benchTTL,
		})
		if err == nil {
			ids = append(ids, id)
		}
		return err
	}

	switch name {
	case "lookup":
		for i := range cfg.instances {
			if err := register(fmt.Sprintf("lookup-%d", i), []string{"v1", "http"}, map[string]string{"zone": "zone-" + strconv.Itoa(i%3)}); err != nil {
				return nil, err
			}
		}
		path := "/api/v1/services/" + service
		sc.next = func(base string, _, _ int) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+path, nil)
		}
		sc.want = http.StatusOK
	case "heartbeat":
		for w := range cfg.clients {
			if err := register("hb-"+strconv.Itoa(w), nil, nil); err != nil {
				return nil, err
			}
		}
		sc.next = func(base string, w, _ int) (*http.Request, error) {
			return http.NewRequest(http.MethodPut, base+"/api/v1/services/"+service+"/instances/hb-"+strconv.Itoa(w)+"/heartbeat", nil)
		}
		sc.want = http.StatusOK
	case "register":
		path := "/api/v1/services/" + service + "/instances"
		var seq atomic.Uint64 // every registration a new id, warm-up included
		sc.next = func(base string, w, _ int) (*http.Request, error) {
			body := fmt.Sprintf(`{"id":"r%d","address":"10.1.%d.%d","port":8080,"tags":["v1"],"ttl_seconds":%d}`,
				seq.Add(1), w/256%256, w%256, int(cfg.registerTTL/time.Second))
			req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader([]byte(body)))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		}
		sc.want = http.StatusCreated
	case "watch":
		if err := register("watched", nil, nil); err != nil {
			return nil, err
		}
		sc.watched = service
		return sc, nil
	case "big":
		if err := setupBig(ctx, saga, cfg, service, sc); err != nil {
			return nil, err
		}
		return sc, nil
	case "checks":
		if err := setupChecks(ctx, saga, cfg, service, runID, sc); err != nil {
			return nil, err
		}
		return sc, nil
	case "lean":
		if err := setupLean(ctx, saga, cfg, service, register, sc); err != nil {
			sc.cleanup()
			return nil, err
		}
		return sc, nil
	}

	req, err := sc.next(saga.base, 0, -1)
	if err != nil {
		return nil, err
	}
	a, err := capture(saga, req)
	if err != nil {
		return nil, err
	}
	if a.Status != sc.want {
		return nil, fmt.Errorf("%s %s answered %d, want %d: %s", req.Method, req.URL.Path, a.Status, sc.want, a.Body)
	}
	if name == "register" {
		ids = append(ids, "r1")
	}
	sc.answer = &a
	return sc, nil
}

// capture sends req and keeps its answer.
func capture(t *target, req *http.Request) (answer, error) {
	resp, err := t.do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Method: req.Method, Status: resp.StatusCode, Header: map[string]string{}, Body: body}
	for _, h := range []string{"Content-Type", "X-Saga-Index"} {
		if v := resp.Header.Get(h); v != "" {
			a.Header[h] = v
		}
	}
	return a, nil
}

// watchSettle is the pause between changes, so that every watcher's next
// blocking query has reached the server before the next change.
const watchSettle = 2 * time.Millisecond

// watchTimeout is how long a change may wait for its wake-ups.
const watchTimeout = 5 * time.Second

// wake is one watcher's answer to a change.
type wake struct {
	at    time.Time
	index uint64
}

// measureWatch has watchers wait on service with blocking queries while
// one client changes it, one change at a time. It measures each watcher's
// answer from the change's answer (the wake-up as a client sees it: zero
// when the watcher had its answer first) and, in a second row, from the
// moment the change was sent (which includes the write itself).
func measureWatch(ctx context.Context, t *target, cfg config, service string) ([]measured, error) {
	first, err := t.api.Lookup(ctx, service, client.LookupOptions{})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchers := cfg.watchers
	wakes := make(chan wake, watchers)
	for range watchers {
		go watcher(ctx, t, service, first.Index, wakes)
	}
	change := 0
	run := func(d time.Duration) (fromAnswer, fromRequest result) {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(watchSettle)
			change++
			sent := time.Now()
			_, err := t.api.Register(ctx, service, registry.Registration{
				ID: "watched", Address: "10.0.0.1", Port: 8080 + change%2, TTLSeconds: benchTTL,
			})
			answered := time.Now()
			if err != nil {
				fromAnswer.fail(err.Error())
				continue
			}
			for range watchers {
				select {
				case w := <-wakes:
					fromAnswer.ok++
					fromAnswer.latencies = append(fromAnswer.latencies, max(w.at.Sub(answered), 0))
					fromRequest.ok++
					fromRequest.latencies = append(fromRequest.latencies, w.at.Sub(sent))
				case <-time.After(watchTimeout):
					fromAnswer.fail(fmt.Sprintf("a watcher did not wake within %s of a change", watchTimeout))
				case <-ctx.Done():
					return fromAnswer, fromRequest
				}
			}
		}
		return fromAnswer, fromRequest
	}
	run(cfg.warmup)
	start := time.Now()
	fromAnswer, fromRequest := run(cfg.duration)
	elapsed := time.Since(start)
	return []measured{
		{res: merge([]result{fromAnswer}, elapsed, "wake-up")},
		{label: " (from request)", res: merge([]result{fromRequest}, elapsed, "wake-up")},
	}, nil
}

// watcher sends blocking queries one after another and reports each
// answer with a newer index.
func watcher(ctx context.Context, t *target, service string, index uint64, wakes chan<- wake) {
	path := t.base + "/api/v1/services/" + service + "?wait=60s&index="
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, path+strconv.FormatUint(index, 10), nil)
		if err != nil {
			return
		}
		resp, err := t.do(req)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the server went away; try again
			continue
		}
		_ = drain(resp.Body)
		resp.Body.Close()
		at := time.Now()
		n, _ := strconv.ParseUint(resp.Header.Get("X-Saga-Index"), 10, 64)
		if n > index {
			index = n
			select {
			case wakes <- wake{at: at, index: n}:
			case <-ctx.Done():
				return
			}
		}
	}
}
