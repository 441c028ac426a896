// Package ui is Saga's web console (SPEC §9): static HTML, CSS and
// JavaScript modules embedded in the binary, which call the HTTP API from
// the browser with the user's token. The assets hold no registry data, so
// anyone may fetch them; what the page shows is what the API lets it read.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/sagaproject/saga/internal/acceptenc"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy lets the page load only its own assets and talk
// only to the server it came from: no inline script, no CDN, no fonts.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// contentTypes names the types of the assets, rather than the system's MIME
// tables, which differ between machines.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// asset is one file, ready to send as it is or gzipped.
type asset struct {
	contentType string
	etag        string
	plain       []byte
	gzipped     []byte // nil when gzip does not make it smaller
}

// Handler serves the console's assets at the paths below its mount point
// ("" or "/" is the page itself). Mount it with http.StripPrefix.
//
// The page refers to the other assets below a version, a hash of their
// content ("3f9c…/app.js"), so a browser may keep them for good: an
// upgrade changes the version and so the paths. The page itself is
// revalidated on every load.
type Handler struct {
	files   map[string]*asset
	version string
}

var _ http.Handler = (*Handler)(nil)

// New reads the embedded assets and compresses each once, so that no
// request pays for compression.
func New() (*Handler, error) {
	h := &Handler{files: map[string]*asset{}}
	err := fs.WalkDir(assets, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(name)
		if err != nil {
			return err
		}
		a, err := newAsset(name, data)
		if err != nil {
			return err
		}
		h.files[strings.TrimPrefix(name, "assets/")] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load console assets: %w", err)
	}
	index, ok := h.files["index.html"]
	if !ok {
		return nil, fmt.Errorf("load console assets: no index.html")
	}
	names := slices.Sorted(maps.Keys(h.files))
	sum := sha256.New()
	for _, name := range names {
		sum.Write([]byte(name + h.files[name].etag))
	}
	h.version = hex.EncodeToString(sum.Sum(nil)[:8])
	page := string(index.plain)
	for _, name := range names {
		page = strings.ReplaceAll(page, `="`+name+`"`, `="`+h.version+"/"+name+`"`)
	}
	if h.files["index.html"], err = newAsset("index.html", []byte(page)); err != nil {
		return nil, fmt.Errorf("load console assets: %w", err)
	}
	return h, nil
}

func newAsset(name string, data []byte) (*asset, error) {
	sum := sha256.Sum256(data)
	a := &asset{
		contentType: contentTypes[path.Ext(name)],
		etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		plain:       data,
	}
	if a.contentType == "" {
		a.contentType = "application/octet-stream"
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(data) {
		a.gzipped = buf.Bytes()
	}
	return a, nil
}

// ServeHTTP answers GET and HEAD for the assets, each with an ETag, so
// that revalidating the page costs a 304.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	rest, immutable := strings.CutPrefix(name, h.version+"/")
	if immutable {
		name = rest
	}
	if name == "" {
		name = "index.html"
	}
	a, ok := h.files[name]
	header := w.Header()
	header.Set("Content-Security-Policy", ContentSecurityPolicy)
	header.Set("X-Content-Type-Options", "nosniff")
	header.Set("Referrer-Policy", "no-referrer")
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if immutable {
		header.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		header.Set("Cache-Control", "no-cache")
	}
	header.Set("Vary", "Accept-Encoding")
	header.Set("ETag", a.etag)
	header.Set("Content-Type", a.contentType)
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.plain
	if a.gzipped != nil && acceptenc.Gzip(r.Header.Values("Accept-Encoding")) {
		body = a.gzipped
		header.Set("Content-Encoding", "gzip")
	}
	header.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (or *).
func etagMatches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag || tag == "*" {
			return true
		}
	}
	return false
}
