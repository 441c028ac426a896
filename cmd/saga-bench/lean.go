package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sagaproject/saga/pkg/client"
)

// The lean scenario: what a Go client that decodes every answer gets from
// asking for a lean answer (?fields=) and from gzip, in the same run.

// leanFields are the instance keys of the lean rows: what a client that
// dials instances needs.
const leanFields = "id,address,port,tags"

// leanInstances is how many instances lean registers unless -instances
// says otherwise.
const leanInstances = 100

// leanVariant is one kind of client: full or lean answers, gzip accepted
// or refused.
type leanVariant struct {
	label string // appended to the scenario's name in the report
	query string // "" or "?fields=…"
	http  *http.Client
}

// leanLoad is the lean scenario's service and clients.
type leanLoad struct {
	path      string // of the lookup
	instances int    // in every answer
	token     string
	variants  []leanVariant
	notes     []string
}

// setupLean registers the instances (two tags, one metadata key, as
// lookup's) through register, and makes the four kinds of clients, each
// on a transport of its own: Go's transport asks for gzip and unpacks it
// unless DisableCompression is set.
func setupLean(ctx context.Context, saga *target, cfg config, service string, register func(id string, tags []string, meta map[string]string) error, sc *scenario) error {
	n := cfg.instances
	if !cfg.instancesSet {
		n = leanInstances
	}
	for i := range n {
		if err := register(fmt.Sprintf("lean-%d", i), []string{"v1", "http"}, map[string]string{"zone": fmt.Sprintf("zone-%d", i%3)}); err != nil {
			return err
		}
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	l := &leanLoad{path: "/api/v1/services/" + service, instances: n, token: cfg.token}
	newClient := func(gzip bool) *http.Client {
		return leanHTTPClient(cfg.clients, gzip, tlsConfig)
	}
	withGzip, without := newClient(true), newClient(false)
	l.variants = []leanVariant{
		{" (full, gzip)", "", withGzip},
		{" (full, no gzip)", "", without},
		{" (" + leanFields + ", gzip)", "?fields=" + leanFields, withGzip},
		{" (" + leanFields + ", no gzip)", "?fields=" + leanFields, without},
	}
	// What one answer weighs, as sent.
	for _, query := range []string{"", "?fields=" + leanFields} {
		var sizes []string
		for _, encoding := range []string{"identity", "gzip"} {
			size, err := l.answerSize(ctx, saga, query, encoding)
			if err != nil {
				return err
			}
			sizes = append(sizes, fmt.Sprintf("%d bytes %s", size, encoding))
		}
		form := "full"
		if query != "" {
			form = leanFields
		}
		l.notes = append(l.notes, fmt.Sprintf("%d instances, %s answer: %s", n, form, strings.Join(sizes, ", ")))
	}
	sc.lean = l
	return nil
}

// leanHTTPClient is a keep-alive client for clients workers that accepts
// gzip, or refuses it.
func leanHTTPClient(clients int, gzip bool, tlsConfig *tls.Config) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = clients + 4
	transport.DisableCompression = !gzip
	transport.TLSClientConfig = tlsConfig
	return &http.Client{Transport: transport}
}

// answerSize is the size of one answer as sent with Accept-Encoding
// encoding.
func (l *leanLoad) answerSize(ctx context.Context, t *target, query, encoding string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+l.path+query, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept-Encoding", encoding) // set by hand: the transport passes the body on as it came
	resp, err := t.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s%s answered %d: %s", l.path, query, resp.StatusCode, body)
	}
	return len(body), nil
}

// measure runs the four kinds of clients in turn, in cfg.rounds rounds
// that rotate their order, so that other work on the machine weighs on
// each alike: each is measured for cfg.duration in all, after a warm-up
// of its own.
func (l *leanLoad) measure(ctx context.Context, t *target, cfg config) ([]measured, error) {
	if cfg.warmup > 0 {
		for _, v := range l.variants {
			l.run(ctx, t, v, cfg.clients, cfg.warmup)
		}
	}
	per := cfg.duration / time.Duration(cfg.rounds)
	parts := make([][]result, len(l.variants))
	for r := range cfg.rounds {
		for k := range l.variants {
			i := (k + r) % len(l.variants)
			parts[i] = append(parts[i], l.run(ctx, t, l.variants[i], cfg.clients, per))
		}
	}
	rows := make([]measured, len(l.variants))
	for i, v := range l.variants {
		var elapsed time.Duration
		for _, p := range parts[i] {
			elapsed += p.elapsed
		}
		rows[i] = measured{label: v.label, res: merge(parts[i], elapsed, "req")}
	}
	for _, pair := range [][2]int{{2, 0}, {3, 1}, {3, 0}} {
		lean, full := rows[pair[0]].res, rows[pair[1]].res
		if full.rate() > 0 {
			l.notes = append(l.notes, fmt.Sprintf("requests/s of%s over%s: %.2f×", rows[pair[0]].label, rows[pair[1]].label, lean.rate()/full.rate()))
		}
	}
	return rows, nil
}

// run has clients workers look the service up with v's client for d, each
// one request after another, decoding every answer into structs as
// package client does.
func (l *leanLoad) run(ctx context.Context, t *target, v leanVariant, clients int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]result, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() { results[w] = l.worker(ctx, t.base+l.path+v.query, v.http) })
	}
	wg.Wait()
	return merge(results, time.Since(start), "req")
}

func (l *leanLoad) worker(ctx context.Context, url string, hc *http.Client) result {
	var r result
	r.latencies = make([]time.Duration, 0, 4096)
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			r.fail(err.Error())
			return r
		}
		if l.token != "" {
			req.Header.Set("Authorization", "Bearer "+l.token)
		}
		start := time.Now()
		n, err := lookupDecoded(hc, req)
		took := time.Since(start)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			r.fail(err.Error())
		case n != l.instances:
			r.fail(fmt.Sprintf("%d instances, want %d", n, l.instances))
		default:
			r.ok++
			r.latencies = append(r.latencies, took)
		}
	}
	return r
}

// lookupDecoded sends a lookup and decodes its answer, returning how many
// instances it held.
func lookupDecoded(hc *http.Client, req *http.Request) (int, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d, want 200", resp.StatusCode)
	}
	var out client.ServiceInstances
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	return len(out.Instances), nil
}
