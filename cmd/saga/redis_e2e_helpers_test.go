package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers for the end-to-end tests of several saga binaries on one Redis.

// startRedisSaga starts `saga serve` on a free port with the Redis store at
// redisURL and its own home and data directory.
func startRedisSaga(t *testing.T, redisURL string) *sagaProcess {
	t.Helper()
	// The tests hammer it from one address: no per-client rates.
	env := sagaEnv(t, "REDIS_URL="+redisURL, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_LIMITS_READ_RATE=0", "SAGA_LIMITS_WRITE_RATE=0")
	return startSaga(t, env, "serve", "--port", "0")
}

// e2eLookupOf looks up service on p and fails the test unless it answers 200.
func e2eLookupOf(t *testing.T, p *sagaProcess, service string) e2eLookup {
	t.Helper()
	var got e2eLookup
	if status := e2eDo(t, http.MethodGet, p.url("/api/v1/services/"+service), nil, &got); status != http.StatusOK {
		t.Fatalf("GET /api/v1/services/%s on %s: status %d", service, p.addr, status)
	}
	return got
}

// ids lists the instance ids of a lookup, in its order.
func (l e2eLookup) ids() []string {
	ids := make([]string, len(l.Instances))
	for i, in := range l.Instances {
		ids[i] = in.ID
	}
	return ids
}

func (l e2eLookup) has(id string) bool {
	for _, in := range l.Instances {
		if in.ID == id {
			return true
		}
	}
	return false
}

// e2eHealth is the part of GET /api/v1/health the tests look at.
type e2eHealth struct {
	Status  string `json:"status"`
	Storage string `json:"storage"`
	Redis   string `json:"redis"`
}

func e2eHealthOf(t *testing.T, p *sagaProcess) (int, e2eHealth) {
	t.Helper()
	var h e2eHealth
	status := e2eDo(t, http.MethodGet, p.url("/api/v1/health"), nil, &h)
	return status, h
}

// e2eErrorBody is the JSON shape of every error answer.
type e2eErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// blockingLookup is the answer to one blocking query.
type blockingLookup struct {
	body   e2eLookup
	status int
	at     time.Time
	err    error
}

// startBlockingLookup sends GET /api/v1/services/{service}?index=N&wait=…
// from its own goroutine and delivers the answer on the returned channel.
func startBlockingLookup(t *testing.T, p *sagaProcess, service string, index uint64, wait time.Duration) <-chan blockingLookup {
	t.Helper()
	u := p.url(fmt.Sprintf("/api/v1/services/%s?index=%d&wait=%s", service, index, wait))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	answer := make(chan blockingLookup, 1)
	go func() {
		var a blockingLookup
		defer func() { answer <- a }()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			a.err = err
			return
		}
		defer resp.Body.Close()
		a.status, a.at = resp.StatusCode, time.Now()
		data, err := io.ReadAll(resp.Body)
		if err == nil {
			err = json.Unmarshal(data, &a.body)
		}
		a.err = err
	}()
	return answer
}

// eventLog follows a saga's event stream and keeps every event it saw, so
// a test can wait for one and later count them all.
type eventLog struct {
	name    string
	mu      sync.Mutex
	events  []e2eEvent
	ended   bool
	changed chan struct{}
}

// followEvents opens GET /api/v1/events for services on p. The stream is
// subscribed once this returns: saga sends the headers after subscribing.
func followEvents(t *testing.T, p *sagaProcess, name string, services ...string) *eventLog {
	t.Helper()
	q := url.Values{"service": services}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url("/api/v1/events?"+q.Encode()), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/v1/events on %s: %v", name, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/v1/events on %s: %d %s", name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	el := &eventLog{name: name, changed: make(chan struct{})}
	stream := e2eReadEvents(t, resp.Body)
	go func() {
		for ev := range stream {
			el.mu.Lock()
			el.events = append(el.events, ev)
			close(el.changed)
			el.changed = make(chan struct{})
			el.mu.Unlock()
		}
		el.mu.Lock()
		el.ended = true
		close(el.changed)
		el.mu.Unlock()
	}()
	return el
}

// all returns a copy of the events seen so far.
func (l *eventLog) all() []e2eEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]e2eEvent(nil), l.events...)
}

// waitFor waits until the stream has carried an event of typ for the
// instance id and returns it.
func (l *eventLog) waitFor(t *testing.T, typ, id string, timeout time.Duration) e2eEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		events, ended, changed := l.events, l.ended, l.changed
		l.mu.Unlock()
		for _, ev := range events {
			if ev.Type == typ && ev.Data.Instance.ID == id {
				return ev
			}
		}
		if ended {
			t.Fatalf("%s: event stream ended without %s %s; saw %s", l.name, typ, id, describeEvents(events))
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: no %s event for %s within %s; saw %s", l.name, typ, id, timeout, describeEvents(events))
		}
	}
}

// count is how many events of typ for the instance id the stream carried.
func (l *eventLog) count(typ, id string) int {
	n := 0
	for _, ev := range l.all() {
		if ev.Type == typ && ev.Data.Instance.ID == id {
			n++
		}
	}
	return n
}

func describeEvents(events []e2eEvent) string {
	parts := make([]string, len(events))
	for i, ev := range events {
		parts[i] = fmt.Sprintf("%s %s/%s@%d", ev.Type, ev.Data.Service, ev.Data.Instance.ID, ev.Data.Index)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
