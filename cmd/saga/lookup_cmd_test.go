package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// saga lookup asks for a lean answer, the keys its table prints, and
// still prints every column; -o json keeps the full form.
func TestLookupTableFromALeanAnswer(t *testing.T) {
	cli := newClientCLI(t)
	target, err := url.Parse(cli.addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		fields []string
	)
	proxy := httputil.NewSingleHostReverseProxy(target)
	recording := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/v1/services/web" {
			mu.Lock()
			fields = append(fields, r.URL.Query().Get("fields"))
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(recording.Close)
	cli.addr = recording.URL

	reg, err := cli.api.Register(t.Context(), "web", registry.Registration{
		ID: "web-1", Address: "10.0.0.5", Port: 8080, Tags: []string{"v2", "http"},
		Metadata: map[string]string{"zone": "eu-1", "rack": "7"}, TTLSeconds: 120,
		Checks: []registry.Check{{TCP: "10.0.0.5:8080", Interval: "1h"}},
	})
	if err != nil {
		t.Fatal(err)
	}

	// A checked instance starts critical until its checks pass: --status any.
	out := cli.mustRun("lookup", "web", "--status", "any")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("lookup printed %d lines, want a header and one row:\n%s", len(lines), out)
	}
	header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	if want := []string{"SERVICE", "ID", "ADDRESS", "PORT", "STATUS", "TAGS", "METADATA", "EXPIRES", "CHECKS"}; !slices.Equal(header, want) {
		t.Fatalf("header %v, want %v", header, want)
	}
	expires := reg.Instance.ExpiresAt.UTC().Format(time.RFC3339)
	if want := []string{"web", "web-1", "10.0.0.5", "8080", string(reg.Instance.Status), "v2,http", "rack=7,zone=eu-1", expires, "tcp", "10.0.0.5:8080=?"}; !slices.Equal(row, want) {
		t.Fatalf("row %v, want %v", row, want)
	}

	var full client.ServiceInstances
	if err := json.Unmarshal([]byte(cli.mustRun("lookup", "web", "--status", "any", "-o", "json")), &full); err != nil {
		t.Fatal(err)
	}
	if in := full.Instances[0]; in.TTLSeconds != 120 || in.RegisteredAt.IsZero() || in.LastHeartbeat.IsZero() {
		t.Fatalf("lookup -o json lacks the full form: %+v", in)
	}

	mu.Lock()
	defer mu.Unlock()
	if want := []string{"service,id,address,port,status,tags,metadata,expires_at,checks", ""}; !slices.Equal(fields, want) {
		t.Fatalf("lookups asked for fields %q, want %q", fields, want)
	}
}
