package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// countingWriter takes an answer without keeping it, so that what a
// request allocates is the server's own.
type countingWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// A lookup of a big service hands its answer back to the view once
// written, so the next encoding after a change fills the same buffer
// instead of allocating one as big as the answer.
func TestBigLookupsHandBackTheirAnswer(t *testing.T) {
	h := newHarness(t)
	const n = 5000
	list := make([]registry.Instance, n)
	for i := range list {
		list[i] = registry.Instance{
			Service: "big", ID: fmt.Sprintf("big-%05d", i), Address: "10.0.0.1", Port: 80,
			Tags: []string{"v1"}, Metadata: map[string]string{"zone": "a"}, TTLSeconds: 60,
			Status: registry.StatusPassing, RegisteredAt: epoch, LastHeartbeat: epoch, ExpiresAt: epoch.Add(time.Minute),
		}
	}
	h.view.Load(registry.Snapshot{Services: map[string]registry.ServiceSnapshot{"big": {Index: 1, Instances: list}}})

	lookup := func() (size int, allocated uint64) {
		var before, after runtime.MemStats
		req := httptest.NewRequest(http.MethodGet, "/api/v1/services/big", nil)
		w := &countingWriter{header: http.Header{}}
		runtime.ReadMemStats(&before)
		h.api.ServeHTTP(w, req)
		runtime.ReadMemStats(&after)
		if w.code != http.StatusOK {
			t.Fatalf("lookup: %d", w.code)
		}
		return w.n, after.TotalAlloc - before.TotalAlloc
	}
	for i := range 4 {
		in := list[0]
		in.ID = fmt.Sprintf("join-%d", i)
		h.view.Apply(registry.Event{Type: registry.EventRegistered, Service: "big", Instance: in, Index: uint64(2 + i)})
		size, allocated := lookup()
		// The first two answers after a change need buffers of their own:
		// the one before is still cached while the next is encoded.
		if i >= 2 && allocated > uint64(size)/2 {
			t.Fatalf("lookup %d after a change allocated %d bytes for an answer of %d", i, allocated, size)
		}
	}
}
