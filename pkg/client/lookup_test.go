package client_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
	"github.com/sagaproject/saga/pkg/registry"
)

// Fields asks for a lean answer: the instances carry the keys asked for
// and zero values for the rest. Go's transport asks for gzip by itself and
// unpacks a big answer; the client sets no Accept-Encoding of its own.
func TestLookupFields(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ method, path, fields, acceptEncoding, contentEncoding string }
	var (
		mu       sync.Mutex
		requests []seen
	)
	proxy := httputil.NewSingleHostReverseProxy(target)
	recording := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		mu.Lock()
		requests = append(requests, seen{r.Method, r.URL.Path, r.URL.Query().Get("fields"), r.Header.Get("Accept-Encoding"), rec.Header().Get("Content-Encoding")})
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(recording.Close)
	c, err := client.New(recording.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 30 {
		_, err := c.Register(ctx, "web", registry.Registration{ID: fmt.Sprintf("web-%02d", i), Address: fmt.Sprintf("10.0.0.%d", i), Port: 8080, Tags: []string{"v1"}, Metadata: map[string]string{"zone": "a"}})
		if err != nil {
			t.Fatal(err)
		}
	}

	full, err := c.Lookup(ctx, "web", client.LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup(ctx, "web", client.LookupOptions{Tags: []string{"v1"}, Fields: []string{"id", "address", "port"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Instances) != 30 || got.Index != full.Index || got.Service != "web" {
		t.Fatalf("lean lookup: %d instances, index %d (full %d)", len(got.Instances), got.Index, full.Index)
	}
	for i, in := range got.Instances {
		want := registry.Instance{ID: full.Instances[i].ID, Address: full.Instances[i].Address, Port: 8080}
		if !in.ExpiresAt.IsZero() || in.Status != "" || in.Tags != nil || in.ID != want.ID || in.Address != want.Address || in.Port != want.Port {
			t.Fatalf("lean instance %+v, want only %+v", in, want)
		}
	}
	// Blocking with fields: at once, as the index is behind.
	if _, err := c.Lookup(ctx, "web", client.LookupOptions{Fields: []string{"id"}, QueryOptions: client.QueryOptions{Index: 1}}); err != nil {
		t.Fatal(err)
	}

	_, err = c.Lookup(ctx, "web", client.LookupOptions{Fields: []string{"id", "bogus"}})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Field != "fields" || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("unknown field: %v, want a 400 naming fields", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var lookups []seen
	for _, r := range requests {
		if r.method == http.MethodGet && r.path == "/api/v1/services/web" {
			lookups = append(lookups, r)
		}
	}
	var fields []string
	for _, r := range lookups {
		fields = append(fields, r.fields)
		if r.acceptEncoding != "gzip" {
			t.Fatalf("the transport did not ask for gzip: %+v", r)
		}
	}
	if !slices.Equal(fields, []string{"", "id,address,port", "id", "id,bogus"}) {
		t.Fatalf("fields asked: %q", fields)
	}
	// The full and the lean answers of 30 instances are over 1 KiB: gzipped.
	if lookups[0].contentEncoding != "gzip" || lookups[1].contentEncoding != "gzip" {
		t.Fatalf("answers not gzipped: %+v", lookups[:2])
	}
}
