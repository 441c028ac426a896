package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// writeJSON prints v as indented JSON, for one-shot answers.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine prints v as one line of JSON, for streams of answers.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// writeTable prints rows aligned in columns under header (none when nil).
// Every cell goes through printable: a tab or a newline in a cell would
// break the table, an escape sequence would drive the terminal.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		safe := make([]string, len(cells))
		for i, c := range cells {
			safe[i] = printable(c)
		}
		fmt.Fprintln(tw, strings.Join(safe, "\t"))
	}
	if header != nil {
		line(header)
	}
	for _, row := range rows {
		line(row)
	}
	return tw.Flush()
}

// tableFields are the instance keys that writeInstances prints: a lookup
// for the table asks for those only (a lean answer); -o json keeps the
// full form.
func tableFields() []string {
	return []string{"service", "id", "address", "port", "status", "tags", "metadata", "expires_at", "checks"}
}

// writeInstances prints instances as a table (see tableFields).
func writeInstances(w io.Writer, instances []registry.Instance) error {
	header := []string{"SERVICE", "ID", "ADDRESS", "PORT", "STATUS", "TAGS", "METADATA", "EXPIRES"}
	checked := slices.ContainsFunc(instances, func(in registry.Instance) bool { return len(in.Checks) > 0 })
	if checked {
		header = append(header, "CHECKS")
	}
	rows := make([][]string, 0, len(instances))
	for _, in := range instances {
		row := []string{
			in.Service, in.ID, in.Address, strconv.Itoa(in.Port), string(in.Status),
			orDash(strings.Join(in.Tags, ",")), orDash(formatMeta(in.Metadata)), formatTime(in.ExpiresAt),
		}
		if checked {
			row = append(row, orDash(formatChecks(in.Checks)))
		}
		rows = append(rows, row)
	}
	return writeTable(w, header, rows)
}

// formatChecks prints each check as "http /healthz=passing"; a check
// whose result this Saga does not hold (another Saga runs it) shows "?".
func formatChecks(checks []registry.Check) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		target, status := c.HTTP, string(c.Status)
		if c.TCP != "" {
			target = c.TCP
		}
		parts = append(parts, c.Kind()+" "+target+"="+cmp.Or(status, "?"))
	}
	return strings.Join(parts, ",")
}

// formatMeta prints metadata as "k1=v1,k2=v2", keys sorted.
func formatMeta(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, k+"="+m[k])
	}
	return strings.Join(pairs, ",")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func hostPort(in registry.Instance) string {
	return net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
