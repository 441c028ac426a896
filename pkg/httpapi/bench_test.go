package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/httpapi"
)

// The benchmarks drive the API through a real HTTP stack: an
// httptest.Server on loopback and one keep-alive client, over the embedded
// store in a temp dir. The handler/ variants call ServeHTTP directly, to
// separate the API's own cost from the network's.

func benchServer(b *testing.B) (*harness, *httptest.Server) {
	b.Helper()
	h := newHarness(b)
	for i := range 10 {
		h.register(b, "web", fmt.Sprintf(`{"id":"web-%d","address":"10.0.0.%d","port":8080,"tags":["v1","eu"],"metadata":{"zone":"a"}}`, i, i+1))
	}
	srv := httptest.NewServer(h.api)
	b.Cleanup(srv.Close)
	return h, srv
}

func benchHTTP(b *testing.B, srv *httptest.Server, method, path string, body func(i int) string, want int) {
	b.Helper()
	client := srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var r io.Reader
		if body != nil {
			r = strings.NewReader(body(i))
		}
		req, err := http.NewRequest(method, srv.URL+path, r)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
}

func benchHandler(b *testing.B, h *harness, method, path string, body func(i int) string, want int) {
	b.Helper()
	req := httptest.NewRequest(method, path, nil)
	w := &discardWriter{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if body != nil {
			req.Body = io.NopCloser(strings.NewReader(body(i)))
		}
		clear(w.header)
		w.code = 0
		h.api.ServeHTTP(w, req)
		if w.code != want {
			b.Fatalf("%s %s: %d", method, path, w.code)
		}
	}
}

// discardWriter is the cheapest ResponseWriter, so that the handler
// benchmarks measure the API and not a recorder.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// BenchmarkLookup reads a 10-instance service; after the first request every
// answer comes from the cached encoding.
func BenchmarkLookup(b *testing.B) {
	b.Run("http", func(b *testing.B) {
		_, srv := benchServer(b)
		benchHTTP(b, srv, http.MethodGet, "/api/v1/services/web", nil, http.StatusOK)
	})
	b.Run("handler", func(b *testing.B) {
		h, _ := benchServer(b)
		benchHandler(b, h, http.MethodGet, "/api/v1/services/web", nil, http.StatusOK)
	})
}

// BenchmarkHeartbeat renews one instance; the embedded store writes nothing
// to disk for it.
func BenchmarkHeartbeat(b *testing.B) {
	path := "/api/v1/services/web/instances/web-3/heartbeat"
	b.Run("http", func(b *testing.B) {
		_, srv := benchServer(b)
		benchHTTP(b, srv, http.MethodPut, path, nil, http.StatusOK)
	})
	b.Run("handler", func(b *testing.B) {
		h, _ := benchServer(b)
		benchHandler(b, h, http.MethodPut, path, nil, http.StatusOK)
	})
}

// BenchmarkRegister replaces instances of a service in turn, one client at a
// time: every call waits for its own fsync (concurrent clients share them).
func BenchmarkRegister(b *testing.B) {
	body := func(i int) string {
		return fmt.Sprintf(`{"id":"web-%d","address":"10.0.0.1","port":8080,"tags":["v1"]}`, i%10)
	}
	b.Run("http", func(b *testing.B) {
		_, srv := benchServer(b)
		benchHTTP(b, srv, http.MethodPost, "/api/v1/services/web/instances", body, http.StatusOK)
	})
	b.Run("handler", func(b *testing.B) {
		h, _ := benchServer(b)
		benchHandler(b, h, http.MethodPost, "/api/v1/services/web/instances", body, http.StatusOK)
	})
}

// BenchmarkLookupAuth is a lookup with auth off, and on with a read token:
// what checking a token costs a request, through HTTP (client and server
// on the same cores, as with the load tool) and in the handler alone.
func BenchmarkLookupAuth(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "token"
		}
		// setup returns the server and the header that goes with each request.
		setup := func(b *testing.B) (*harness, *httptest.Server, http.Header) {
			h, srv := benchServer(b)
			header := http.Header{}
			if on {
				_, secret, err := h.api.Tokens().Create(context.Background(), auth.Spec{Role: auth.RoleRead})
				if err != nil {
					b.Fatal(err)
				}
				h.api.SetAuth(httpapi.AuthSettings{Enabled: true})
				header.Set("Authorization", "Bearer "+secret)
			}
			return h, srv, header
		}
		b.Run("http/"+name, func(b *testing.B) {
			_, srv, header := setup(b)
			client := srv.Client()
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/services/web", nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header = header
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("lookup: %d", resp.StatusCode)
				}
			}
		})
		b.Run("handler/"+name, func(b *testing.B) {
			h, _, header := setup(b)
			req := httptest.NewRequest(http.MethodGet, "/api/v1/services/web", nil)
			req.Header = header
			w := &discardWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.header)
				w.code = 0
				h.api.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("lookup: %d", w.code)
				}
			}
		})
	}
}
