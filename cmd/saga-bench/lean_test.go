package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/client/clienttest"
)

// lean measures full and lean answers, with gzip and without, and says
// how they compare; it runs only when named.
func TestLeanScenario(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	var out, errOut bytes.Buffer
	args := []string{"-addr", srv.URL, "-c", "2", "-d", "400ms", "-warmup", "0", "-scenario", "lean", "-rounds", "2"}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("saga-bench exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	rows := tableRows(t, out.String())
	for _, want := range []string{
		"lean (full, gzip) saga", "lean (full, no gzip) saga",
		"lean (id,address,port,tags, gzip) saga", "lean (id,address,port,tags, no gzip) saga",
	} {
		row, ok := rows[want]
		if !ok {
			t.Errorf("no row for %q in:\n%s", want, out.String())
			continue
		}
		if row.ok == 0 || row.failed != 0 {
			t.Errorf("%s: %d ok, %d failed; want some and none:\n%s", want, row.ok, row.failed, out.String())
		}
	}
	for _, want := range []string{"100 instances, full answer:", "bytes gzip", "over (full, gzip):"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if _, err := parseScenarios("all"); err != nil || strings.Contains(strings.Join(allScenarios, ","), "lean") {
		t.Error("lean runs with all")
	}
}
