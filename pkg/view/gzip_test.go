package view

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// A cached answer is compressed once, for every reader, concurrent ones
// included, and its compressed bytes count against the cache budget until
// the answer leaves the cache.
func TestGzipIsMadeOncePerCachedAnswer(t *testing.T) {
	v, clock := newView(t)
	for i := range 50 {
		v.Apply(registered(inst("web", fmt.Sprintf("web-%02d", i), time.Minute, registry.StatusPassing, []string{"v1"}, map[string]string{"zone": "a"}), uint64(i+1)))
	}
	a := v.LookupAnswer("web", Query{})
	before := v.cacheBytes
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() { got[i] = v.LookupAnswer("web", Query{}).Gzip() })
	}
	wg.Wait()
	for _, gz := range got[1:] {
		if &gz[0] != &got[0][0] {
			t.Fatal("the answer was compressed more than once")
		}
	}
	if plain := gunzip(t, got[0]); !bytes.Equal(plain, a.Body) {
		t.Fatalf("gunzipped %s, want %s", plain, a.Body)
	}
	if v.cacheBytes != before+int64(len(got[0])) {
		t.Fatalf("cache holds %d bytes, want %d + %d compressed", v.cacheBytes, before, len(got[0]))
	}
	if again := v.LookupAnswer("web", Query{}).Gzip(); &again[0] != &got[0][0] {
		t.Fatal("a later reader compressed the answer again")
	}

	// A change drops the answer and its compressed form from the budget.
	clock.Advance(time.Second)
	v.Apply(registered(inst("web", "web-new", time.Minute, registry.StatusPassing, nil, nil), 51))
	if v.cacheBytes != 0 {
		t.Fatalf("cache holds %d bytes after the service changed, want 0", v.cacheBytes)
	}
	fresh := v.LookupAnswer("web", Query{})
	if gz := fresh.Gzip(); !bytes.Equal(gunzip(t, gz), fresh.Body) || &gz[0] == &got[0][0] {
		t.Fatal("the new answer's gzip form is not its own")
	}

	// An answer built by hand (not cached) compresses too.
	hand := Answer{Body: []byte(`{"x":1}`)}
	if !bytes.Equal(gunzip(t, hand.Gzip()), hand.Body) {
		t.Fatal("hand-built answer")
	}
}

// BenchmarkGzipBigAnswer compresses the answer of a lookup of 200,000
// instances at the levels worth considering, for GzipLevel's comment.
//
//	go test ./pkg/view -run XXX -bench GzipBigAnswer -benchtime 3x
func BenchmarkGzipBigAnswer(b *testing.B) {
	big := bigInstances("big", 200_000, time.Now().UTC())
	list := make([]*registry.Instance, len(big))
	for i := range big {
		list[i] = &big[i]
	}
	for _, fields := range []Fields{0, fieldID | fieldAddress | fieldPort | fieldTags} {
		body := appendLookup(nil, "big", 1, list, fields)
		for _, level := range []int{gzip.HuffmanOnly, gzip.BestSpeed, 3, gzip.DefaultCompression} {
			b.Run(fmt.Sprintf("fields=%s/level=%d", fields, level), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				var out bytes.Buffer
				for b.Loop() {
					out.Reset()
					zw, _ := gzip.NewWriterLevel(&out, level)
					_, _ = zw.Write(body)
					_ = zw.Close()
				}
				b.ReportMetric(float64(len(body))/1e6, "MB-in")
				b.ReportMetric(100*float64(out.Len())/float64(len(body)), "%-out")
			})
		}
	}
}
