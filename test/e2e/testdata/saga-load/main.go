// Command saga-load is the e2e tests' client inside the booted machine: it
// sends lookups as fast as it can while other goroutines hold blocking
// queries, until SIGTERM; then it waits for every blocking client to have
// seen the instances named by -want, and prints the counts as JSON.
//
// A lookup fails when it gets no answer or a status other than 200. The
// blocking clients use pkg/client, which asks again (same index) after a
// 503 with Retry-After from a draining server; those 503s are counted as
// "drained", not as failures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sagaproject/saga/pkg/client"
)

type report struct {
	Lookups       int64 `json:"lookups"`
	LookupsFailed int64 `json:"lookups_failed"`
	// LookupsCut counts lookups whose connection ended without an answer
	// (EOF, reset) rather than being refused: Go's client retries such
	// a request on a reused connection by itself, not on a fresh one.
	LookupsCut   int64               `json:"lookups_cut"`
	Failures     []string            `json:"failures,omitempty"`
	Blocking     int64               `json:"blocking"`
	Drained      int64               `json:"drained"`
	BlockingFail int64               `json:"blocking_failed"`
	Seen         map[string][]string `json:"seen"` // per blocking client: the ids it saw
}

// counting counts the 503 answers that the blocking clients retry.
type counting struct{ drained *atomic.Int64 }

func (c counting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
		c.drained.Add(1)
	}
	return resp, err
}

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8030", "server")
	service := flag.String("service", "web", "service to look up")
	workers := flag.Int("lookups", 4, "goroutines sending lookups")
	watchers := flag.Int("blocking", 8, "goroutines holding blocking queries")
	want := flag.String("want", "", "comma-separated ids every blocking client must see")
	flag.Parse()

	var rep report
	var lookups, failed, cut, blocking, drained, blockFailed atomic.Int64
	var mu sync.Mutex
	rep.Seen = map[string][]string{}

	lookupCtx, stopLookups := context.WithCancel(context.Background())
	watchCtx, stopWatching := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Second}
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lookupCtx.Err() == nil {
				lookups.Add(1)
				resp, err := hc.Get(*addr + "/api/v1/services/" + *service)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
					cut.Add(1)
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					mu.Lock()
					if len(rep.Failures) < 20 {
						rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v %v", time.Now().Format(time.StampMilli), err, status(resp)))
					}
					mu.Unlock()
				}
			}
		}()
	}
	wanted := strings.Split(*want, ",")
	var watchWG sync.WaitGroup
	for i := range *watchers {
		c, err := client.New(*addr, client.WithHTTPClient(&http.Client{Transport: counting{&drained}}))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		name := fmt.Sprintf("blocking-%d", i)
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			var index uint64
			seen := map[string]bool{}
			for watchCtx.Err() == nil {
				blocking.Add(1)
				res, err := c.Lookup(watchCtx, *service, client.LookupOptions{QueryOptions: client.QueryOptions{Index: index, Wait: 20 * time.Second}})
				if err != nil {
					if watchCtx.Err() == nil {
						blockFailed.Add(1)
						fmt.Fprintln(os.Stderr, name, err)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				index = res.Index
				for _, in := range res.Instances {
					seen[in.ID] = true
				}
				mu.Lock()
				rep.Seen[name] = sortedKeys(seen)
				mu.Unlock()
			}
		}()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stopLookups()
	wg.Wait()
	// Give the blocking clients up to 30 s to see every wanted id.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		complete := len(rep.Seen) == *watchers
		for _, ids := range rep.Seen {
			complete = complete && all(set(ids), wanted)
		}
		mu.Unlock()
		if complete {
			break
		}
	}
	stopWatching()
	watchWG.Wait()

	mu.Lock()
	rep.Lookups, rep.LookupsFailed, rep.LookupsCut = lookups.Load(), failed.Load()-cut.Load(), cut.Load()
	rep.Blocking, rep.Drained, rep.BlockingFail = blocking.Load(), drained.Load(), blockFailed.Load()
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	mu.Unlock()
}

func status(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Status
}

func all(seen map[string]bool, want []string) bool {
	for _, id := range want {
		if id != "" && !seen[id] {
			return false
		}
	}
	return true
}

func set(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
