package ui_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/ui"
)

func serve(t *testing.T, h http.Handler, method, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, contentType string
	}{
		{"/", "text/html; charset=utf-8"},
		{"/index.html", "text/html; charset=utf-8"},
		{"/app.js", "text/javascript; charset=utf-8"},
		{"/api.js", "text/javascript; charset=utf-8"},
		{"/stream.js", "text/javascript; charset=utf-8"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		rec := serve(t, h, http.MethodGet, tt.path, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", tt.path, rec.Code)
		}
		if got := rec.Header().Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.contentType)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tt.path, csp)
		}
		if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("ETag") == "" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q", tt.path, rec.Header().Get("Cache-Control"), rec.Header().Get("ETag"))
		}
		if rec.Header().Get("Content-Encoding") != "" {
			t.Errorf("GET %s without Accept-Encoding came encoded", tt.path)
		}
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	etag := serve(t, h, http.MethodGet, "/app.js", nil).Header().Get("ETag")
	for _, header := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		rec := serve(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": header})
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", header, rec.Code, rec.Body.Len())
		}
	}
	if rec := serve(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": `"other"`}); rec.Code != http.StatusOK {
		t.Errorf("a stale ETag: %d, want 200", rec.Code)
	}
}

func TestHandlerGzip(t *testing.T) {
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	plain := serve(t, h, http.MethodGet, "/app.js", nil).Body.Bytes()
	for header, want := range map[string]bool{
		"gzip":                  true,
		"gzip, deflate, br":     true,
		"br;q=1.0, gzip;q=0.5":  true,
		"*":                     true,
		"gzip;q=0":              false,
		"gzip; q=0.000":         false,
		"deflate":               false,
		"identity, gzip;q=0.01": true,
	} {
		rec := serve(t, h, http.MethodGet, "/app.js", map[string]string{"Accept-Encoding": header})
		got := rec.Header().Get("Content-Encoding") == "gzip"
		if got != want {
			t.Errorf("Accept-Encoding %q: gzipped=%v, want %v", header, got, want)
			continue
		}
		if rec.Header().Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", header, rec.Header().Get("Vary"))
		}
		body := rec.Body.Bytes()
		if got {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(body, plain) {
			t.Errorf("Accept-Encoding %q: the body differs from the plain one", header)
		}
	}
}

func TestHandlerUnknown(t *testing.T) {
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/missing.js", "/assets/app.js", "/../ui.go"} {
		if rec := serve(t, h, http.MethodGet, path, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
	}
	if rec := serve(t, h, http.MethodHead, "/", nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD /: %d with %d bytes", rec.Code, rec.Body.Len())
	}
}

// TestHandlerVersionsAssets: the page names its assets below a version,
// where they may be cached for good; the plain names stay revalidated.
func TestHandlerVersionsAssets(t *testing.T) {
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	page := serve(t, h, http.MethodGet, "/", nil).Body.String()
	m := regexp.MustCompile(`src="([0-9a-f]{16})/app\.js"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page does not name a versioned app.js:\n%s", page)
	}
	for _, name := range []string{"style.css", "api.js", "stream.js", "favicon.svg"} {
		if !strings.Contains(page, `"`+m[1]+"/"+name+`"`) {
			t.Errorf("the page does not name %s below version %s", name, m[1])
		}
	}
	rec := serve(t, h, http.MethodGet, "/"+m[1]+"/app.js", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Cache-Control"), "immutable") {
		t.Errorf("GET the versioned app.js: %d, Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
	if !bytes.Equal(rec.Body.Bytes(), serve(t, h, http.MethodGet, "/app.js", nil).Body.Bytes()) {
		t.Error("the versioned app.js differs from the plain one")
	}
	if rec := serve(t, h, http.MethodGet, "/0000000000000000/app.js", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET app.js below another version: %d, want 404", rec.Code)
	}
}
