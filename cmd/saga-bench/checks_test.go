package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
)

// TestChecksScenario runs checks at a tiny size against a real server
// with its checker: every instance probed and passing, both lookup rows,
// the figures noted, and nothing left behind.
func TestChecksScenario(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-scenario", "checks", "-checked", "50", "-c", "4",
		"-d", "1s", "-warmup", "0", "-pid", strconv.Itoa(os.Getpid())}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	rows := tableRows(t, out.String())
	for _, want := range []string{"checks (lookup, no checks) saga", "checks (lookup, with checks) saga"} {
		if row, ok := rows[want]; !ok || row.ok == 0 || row.failed != 0 {
			t.Errorf("row %q: %+v (found %t), want some ok and none failed:\n%s", want, row, ok, out.String())
		}
	}
	for _, want := range []string{"registered 50 instances", "all probed and passing", "probes/s seen by the target (5 expected)",
		"Saga's CPU", "lookups with checks at"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	catalog, err := clientFor(t, srv.URL).Services(t.Context(), client.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range catalog.Services {
		if s.Instances > 0 {
			t.Errorf("service %s still has %d instances after the run", s.Name, s.Instances)
		}
	}
}
