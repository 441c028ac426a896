package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sagaproject/saga/pkg/client"
)

// target is a server under load: its base URL, a keep-alive client and
// the token that goes with every request.
type target struct {
	base  string
	http  *http.Client
	api   *client.Client
	token string
}

// newTarget makes the clients of the server at addr. token, when not
// empty, goes with every request; tlsConfig, when not nil, is used for an
// https:// addr.
func newTarget(addr string, clients int, token string, tlsConfig *tls.Config) (*target, error) {
	base, err := client.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// One idle connection per client, so every request reuses one.
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = clients + 4
	transport.DisableCompression = true
	// Set on the transport: client.WithTLS does not apply to a client of our own.
	transport.TLSClientConfig = tlsConfig
	hc := &http.Client{Transport: transport}
	api, err := client.New(base.String(), client.WithHTTPClient(hc), client.WithToken(token))
	if err != nil {
		return nil, err
	}
	return &target{base: base.String(), http: hc, api: api, token: token}, nil
}

// do sends a request built by hand, with the token when there is one.
func (t *target) do(req *http.Request) (*http.Response, error) {
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.http.Do(req)
}

// result is what one measurement found.
type result struct {
	ok        int
	failed    int
	firstErr  string
	elapsed   time.Duration
	latencies []time.Duration // sorted
	unit      string          // what ok counts: "req" or "wake-up"
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := min(int(float64(len(r.latencies))*p), len(r.latencies)-1)
	return r.latencies[i]
}

// requestFunc builds worker w's i-th request against base.
type requestFunc func(base string, w, i int) (*http.Request, error)

// load runs clients workers, each sending requests one after another on its
// own keep-alive connection: first for the warm-up, unmeasured, then for
// the measured duration.
func load(ctx context.Context, t *target, cfg config, next requestFunc, want int) result {
	if cfg.warmup > 0 {
		loadFor(ctx, t, cfg.clients, cfg.warmup, next, want)
	}
	return loadFor(ctx, t, cfg.clients, cfg.duration, next, want)
}

func loadFor(ctx context.Context, t *target, clients int, d time.Duration, next requestFunc, want int) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]result, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() { results[w] = worker(ctx, t, w, next, want) })
	}
	wg.Wait()
	return merge(results, time.Since(start), "req")
}

func worker(ctx context.Context, t *target, w int, next requestFunc, want int) result {
	var r result
	r.latencies = make([]time.Duration, 0, 4096)
	for i := 0; ctx.Err() == nil; i++ {
		req, err := next(t.base, w, i)
		if err != nil {
			if ctx.Err() == nil { // not a pacer's wait cut short by the end
				r.fail(err.Error())
			}
			return r
		}
		_, took, err := fetch(t, req.WithContext(ctx), want)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err.Error())
			}
			continue
		}
		r.ok++
		r.latencies = append(r.latencies, took)
	}
	return r
}

// fetch sends req and reads its whole answer, which must have the status
// want, and returns its headers and how long that took.
func fetch(t *target, req *http.Request, want int) (http.Header, time.Duration, error) {
	start := time.Now()
	resp, err := t.do(req)
	if err != nil {
		return nil, 0, err
	}
	err = drain(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	switch {
	case err != nil:
		return nil, 0, err
	case resp.StatusCode != want:
		return nil, 0, fmt.Errorf("status %d, want %d", resp.StatusCode, want)
	}
	return resp.Header, took, nil
}

// drain reads an answer to its end and throws it away, in reads of up to
// drainChunk. io.Copy into io.Discard reads 8 KiB at a time: 8,192 read
// calls for a 64 MB answer, whose CPU, with the tool and the server on one
// machine, the tool took from the server it measures.
func drain(r io.Reader) error {
	bp := drainBuffers.Get().(*[]byte)
	defer drainBuffers.Put(bp)
	for {
		_, err := r.Read(*bp)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// drainChunk is the most one read of drain asks for.
const drainChunk = 1 << 20

// drainBuffers hold drain's buffers between answers.
var drainBuffers = sync.Pool{New: func() any { b := make([]byte, drainChunk); return &b }}

func (r *result) fail(msg string) {
	r.failed++
	if r.firstErr == "" {
		r.firstErr = msg
	}
}

func merge(parts []result, elapsed time.Duration, unit string) result {
	out := result{elapsed: elapsed, unit: unit}
	for _, p := range parts {
		out.ok += p.ok
		out.failed += p.failed
		if out.firstErr == "" {
			out.firstErr = p.firstErr
		}
		out.latencies = append(out.latencies, p.latencies...)
	}
	slices.Sort(out.latencies)
	return out
}

// report collects the rows of the final table.
type report struct {
	w     io.Writer
	rows  []row
	notes []string // printed after the table
}

type row struct {
	scenario, against string
	res               result
}

func newReport(w io.Writer) *report { return &report{w: w} }

func (r *report) add(scenario, against string, res result) {
	r.rows = append(r.rows, row{scenario, against, res})
	// Progress as it happens; the aligned table comes at the end.
	fmt.Fprintf(r.w, "  %s against %s: %.0f %s/s, p50 %s, p99 %s, %d failed\n", scenario, against,
		res.rate(), res.unit, round(res.percentile(0.50)), round(res.percentile(0.99)), res.failed)
}

// note prints what a scenario has to say beside its rows, now and again
// after the table.
func (r *report) note(scenario, msg string) {
	r.notes = append(r.notes, scenario+": "+msg)
	fmt.Fprintf(r.w, "  %s: %s\n", scenario, msg)
}

// flush prints the table; a saga row shows its share of the ceiling's
// throughput when the ceiling was measured.
func (r *report) flush() {
	tw := tabwriter.NewWriter(r.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(r.w)
	fmt.Fprintln(tw, "scenario\tagainst\tok\tfailed\tper second\tp50\tp99\tmax\tof ceiling")
	for _, row := range r.rows {
		share := "-"
		if row.against == "saga" {
			for _, other := range r.rows {
				if other.scenario == row.scenario && other.against == "ceiling" && other.res.rate() > 0 {
					share = strconv.FormatFloat(100*row.res.rate()/other.res.rate(), 'f', 0, 64) + " %"
				}
			}
		}
		res := row.res
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\n", row.scenario, row.against, res.ok, res.failed,
			res.rate(), round(res.percentile(0.50)), round(res.percentile(0.99)), round(res.percentile(1)), share)
	}
	_ = tw.Flush()
	for _, n := range r.notes {
		fmt.Fprintln(r.w, n)
	}
	for _, row := range r.rows {
		if row.res.firstErr != "" {
			fmt.Fprintf(r.w, "%s against %s: first failure: %s\n", row.scenario, row.against, row.res.firstErr)
		}
	}
}

// round keeps three significant figures or so, for a readable table.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
