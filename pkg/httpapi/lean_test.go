package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
)

// instanceKeys returns the keys of each instance of a lookup answer, in
// the order the answer writes them.
func instanceKeys(t testing.TB, body []byte) [][]string {
	t.Helper()
	var answer struct {
		Instances []json.RawMessage `json:"instances"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	var out [][]string
	for _, raw := range answer.Instances {
		dec := json.NewDecoder(bytes.NewReader(raw))
		var keys []string
		if _, err := dec.Token(); err != nil { // {
			t.Fatal(err)
		}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, key.(string))
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, keys)
	}
	return out
}

func envelopeKeys(t testing.TB, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

func TestLookupFieldsPickTheInstanceKeys(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	full := h.do(t, http.MethodGet, "/api/v1/services/web", "")
	fullKeys := instanceKeys(t, full.Body.Bytes())[0]
	if !slices.Equal(fullKeys, []string{"service", "id", "address", "port", "tags", "metadata", "ttl_seconds", "status", "registered_at", "last_heartbeat", "expires_at"}) {
		t.Fatalf("full form keys %v", fullKeys)
	}
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"fields=id,address,port,tags", []string{"id", "address", "port", "tags"}},
		{"fields=tags,id", []string{"id", "tags"}}, // canonical order, whatever the asked order
		{"fields=tags&fields=id", []string{"id", "tags"}},
		{"fields=port,%20id", []string{"id", "port"}},
		{"fields=expires_at,status&tag=v1", []string{"status", "expires_at"}},
		{"fields=id,id", []string{"id"}},
		{"fields=service,id,address,port,tags,metadata,ttl_seconds,status,registered_at,last_heartbeat,expires_at,checks", fullKeys},
	} {
		t.Run(tt.query, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, "/api/v1/services/web?"+tt.query, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if got := envelopeKeys(t, rec.Body.Bytes()); !slices.Equal(got, []string{"index", "instances", "service"}) {
				t.Fatalf("envelope keys %v", got)
			}
			keys := instanceKeys(t, rec.Body.Bytes())
			if len(keys) == 0 {
				t.Fatal("no instances")
			}
			for _, k := range keys {
				if !slices.Equal(k, tt.want) {
					t.Fatalf("instance keys %v, want %v: %s", k, tt.want, rec.Body)
				}
			}
			if rec.Header().Get("X-Saga-Index") != full.Header().Get("X-Saga-Index") {
				t.Fatalf("X-Saga-Index %q, want %q", rec.Header().Get("X-Saga-Index"), full.Header().Get("X-Saga-Index"))
			}
		})
	}
	// Every key is the full form, byte for byte.
	every := h.do(t, http.MethodGet, "/api/v1/services/web?fields=service,id,address,port,tags,metadata,ttl_seconds,status,registered_at,last_heartbeat,expires_at,checks", "")
	if every.Body.String() != full.Body.String() {
		t.Fatalf("every field:\n%s\nfull form:\n%s", every.Body, full.Body)
	}
	want := `{"service":"web","index":5,"instances":[{"id":"a","address":"10.0.0.1","port":80,"tags":["v1","eu"]},{"id":"b","address":"10.0.0.2","port":80,"tags":["v1"]}]}` + "\n"
	if got := h.do(t, http.MethodGet, "/api/v1/services/web?fields=id,address,port,tags", "").Body.String(); got != want {
		t.Fatalf("lean answer\n%s\nwant\n%s", got, want)
	}
}

func TestLookupFieldsRefusesUnknownAndEmptyNames(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	for _, tt := range []struct{ query, quoted string }{
		{"fields=", `""`},
		{"fields=bogus", `"bogus"`},
		{"fields=id,,port", `""`},
		{"fields=id,", `""`},
		{"fields=ID", `"ID"`},
		{"fields=id&fields=nope", `"nope"`},
		{"fields=instances", `"instances"`},
		{"fields=id&index=1&wait=1s&fields=x", `"x"`}, // refused before any wait
	} {
		t.Run(tt.query, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, "/api/v1/services/web?"+tt.query, "")
			wantError(t, rec, 400, "invalid_argument", "fields")
			var e apiError
			decode(t, rec, &e)
			if !strings.Contains(e.Error.Message, tt.quoted) || !strings.Contains(e.Error.Message, "expires_at") {
				t.Fatalf("message %q does not name %s and the allowed fields", e.Error.Message, tt.quoted)
			}
		})
	}
	rec := h.do(t, http.MethodGet, "/api/v1/services?fields=id", "")
	wantError(t, rec, 400, "invalid_argument", "fields")
	var e apiError
	decode(t, rec, &e)
	if !strings.Contains(e.Error.Message, "not supported on the catalogue") {
		t.Fatalf("catalogue message %q", e.Error.Message)
	}
}

// Lean and full answers are cached apart: neither answers for the other,
// before or after a change; a heartbeat renews the full form only.
func TestLeanAndFullAnswersAreCachedApart(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	get := func(query string) string {
		t.Helper()
		rec := h.do(t, http.MethodGet, "/api/v1/services/web"+query, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", query, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	for range 2 {
		for _, query := range []string{"", "?fields=id", "?fields=id,port", "", "?fields=id"} {
			keys := instanceKeys(t, []byte(get(query)))[0]
			switch query {
			case "":
				if len(keys) != 11 {
					t.Fatalf("full form has keys %v", keys)
				}
			case "?fields=id":
				if !slices.Equal(keys, []string{"id"}) {
					t.Fatalf("%s has keys %v", query, keys)
				}
			case "?fields=id,port":
				if !slices.Equal(keys, []string{"id", "port"}) {
					t.Fatalf("%s has keys %v", query, keys)
				}
			}
		}
		h.register(t, "web", fmt.Sprintf(`{"id":"new-%d","address":"10.0.0.9","port":80}`, h.view.ServiceIndex("web")))
	}

	full, lean := get(""), get("?fields=id,address,port,tags")
	hits := h.view.Stats().Hits
	h.clock.Advance(2e9)
	if rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""); rec.Code != http.StatusOK {
		t.Fatalf("heartbeat: %d %s", rec.Code, rec.Body)
	}
	if got := get("?fields=id,address,port,tags"); got != lean || h.view.Stats().Hits != hits+1 {
		t.Fatalf("the lean answer was encoded again after a heartbeat (hits %d → %d)", hits, h.view.Stats().Hits)
	}
	if get("") == full {
		t.Fatal("the full form kept the expires_at a heartbeat moved")
	}
}

// gzipGet sends a read with an Accept-Encoding header ("": none).
func gzipGet(t testing.TB, h *harness, method, target, acceptEncoding string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	return rec
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

func TestBigAnswersAreGzippedWhenTheClientAsks(t *testing.T) {
	h := newHarness(t)
	for i := range 20 {
		h.register(t, "web", fmt.Sprintf(`{"id":"web-%02d","address":"10.0.0.%d","port":80,"tags":["v1"],"metadata":{"zone":"a"}}`, i, i))
		h.register(t, fmt.Sprintf("svc-%02d-with-a-longer-name", i), `{"id":"a","address":"10.0.1.1","port":80}`)
	}
	h.register(t, "tiny", `{"id":"t","address":"10.0.2.1","port":80}`)

	for _, target := range []string{"/api/v1/services/web", "/api/v1/services/web?fields=id,address,port,tags,metadata", "/api/v1/services", "/api/v1/services/web?index=1&wait=1s"} {
		t.Run(target, func(t *testing.T) {
			plain := gzipGet(t, h, http.MethodGet, target, "")
			if plain.Code != http.StatusOK || plain.Header().Get("Content-Encoding") != "" || plain.Body.Len() < 1024 {
				t.Fatalf("without Accept-Encoding: %d %q, %d bytes", plain.Code, plain.Header().Get("Content-Encoding"), plain.Body.Len())
			}
			for _, accept := range []string{"gzip", "deflate, gzip;q=0.5", "br;q=1, *", "GZIP", "x-gzip"} {
				rec := gzipGet(t, h, http.MethodGet, target, accept)
				if rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != "gzip" {
					t.Fatalf("Accept-Encoding %q: %d, Content-Encoding %q", accept, rec.Code, rec.Header().Get("Content-Encoding"))
				}
				if got := gunzip(t, rec.Body.Bytes()); !bytes.Equal(got, plain.Body.Bytes()) {
					t.Fatalf("gunzipped answer differs:\n%s\nwant\n%s", got, plain.Body)
				}
				if rec.Body.Len() >= plain.Body.Len() {
					t.Fatalf("gzipped %d bytes, plain %d", rec.Body.Len(), plain.Body.Len())
				}
				for _, hdr := range []string{"X-Saga-Index", "Content-Type"} {
					if rec.Header().Get(hdr) != plain.Header().Get(hdr) {
						t.Fatalf("%s %q, plain %q", hdr, rec.Header().Get(hdr), plain.Header().Get(hdr))
					}
				}
				if rec.Header().Get("Vary") != "Accept-Encoding" || plain.Header().Get("Vary") != "Accept-Encoding" {
					t.Fatalf("Vary %q / %q", rec.Header().Get("Vary"), plain.Header().Get("Vary"))
				}
			}
			for _, accept := range []string{"identity", "gzip;q=0", "gzip;q=0, *", "*;q=0", "deflate, br", "gzip;q=x"} {
				if rec := gzipGet(t, h, http.MethodGet, target, accept); rec.Header().Get("Content-Encoding") != "" || rec.Body.String() != plain.Body.String() {
					t.Fatalf("Accept-Encoding %q: Content-Encoding %q", accept, rec.Header().Get("Content-Encoding"))
				}
			}
		})
	}

	// Small answers and errors stay as they are; Vary is there all the same.
	for _, target := range []string{"/api/v1/services/tiny", "/api/v1/services/web?fields=id&tag=none", "/api/v1/services/web?fields=bogus", "/api/v1/services/web/instances/web-01"} {
		rec := gzipGet(t, h, http.MethodGet, target, "gzip")
		if rec.Header().Get("Content-Encoding") != "" || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: Content-Encoding %q, body %q", target, rec.Header().Get("Content-Encoding"), rec.Body)
		}
	}
	if rec := gzipGet(t, h, http.MethodGet, "/api/v1/services/web?fields=bogus", "gzip"); rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("a refused lookup has Vary %q", rec.Header().Get("Vary"))
	}

	// HEAD answers as GET does, through a real server, without a body.
	srv := httptest.NewServer(h.api)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/api/v1/services/web", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || len(body) != 0 || resp.Header.Get("X-Saga-Index") == "" {
		t.Fatalf("HEAD: %d %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	// Go's client asks for gzip by itself and hands back the JSON.
	resp, err = srv.Client().Get(srv.URL + "/api/v1/services/web?fields=id,address,port,tags")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !resp.Uncompressed || !json.Valid(body) {
		t.Fatalf("Go client: uncompressed %v, body %q", resp.Uncompressed, body)
	}
}

// The event stream is never compressed.
func TestEventsAreNotGzipped(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.api)
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/events", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("events with Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
}

func TestBlockingLeanLookupWakesOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		woken := serve(ctx, h, "/api/v1/services/web?index=1&wait=1m&fields=id,port")
		synctest.Wait()
		select {
		case rec := <-woken:
			t.Fatalf("answered before any change: %d %s", rec.Code, rec.Body)
		default:
		}
		// A heartbeat is no change to wake for.
		if rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""); rec.Code != http.StatusOK {
			t.Fatalf("heartbeat: %d", rec.Code)
		}
		synctest.Wait()
		select {
		case rec := <-woken:
			t.Fatalf("a heartbeat woke the watcher: %s", rec.Body)
		default:
		}
		h.register(t, "web", `{"id":"b","address":"10.0.0.2","port":81}`)
		synctest.Wait()
		select {
		case rec := <-woken:
			want := `{"service":"web","index":2,"instances":[{"id":"a","port":80},{"id":"b","port":81}]}` + "\n"
			if rec.Code != http.StatusOK || rec.Body.String() != want || rec.Header().Get("X-Saga-Index") != "2" {
				t.Fatalf("woken lean lookup: %d %s, want %s", rec.Code, rec.Body, want)
			}
		default:
			t.Fatal("the lean watcher did not wake on a change")
		}
	})
}

// FuzzLookupQuery sends any query string and Accept-Encoding to a lookup
// and the catalogue: the answer is 200 or a JSON 400, never a 5xx or a
// panic; a 200 with fields carries only known keys, and a gzipped one
// unpacks to JSON.
func FuzzLookupQuery(f *testing.F) {
	for _, seed := range []struct{ query, accept string }{
		{"", ""},
		{"fields=id,address,port,tags", "gzip"},
		{"fields=", "gzip;q=0"},
		{"fields=id&fields=port&tag=v1", "*"},
		{"fields=,,", "x-gzip;q=0.5"},
		{"fields=%ff", "gzip;q=NaN"},
		{"fields=id&index=1&wait=1ms", "deflate, gzip"},
		{"fields=checks&status=any&meta=zone:a", "gzip;q=1e400"},
		{"fields=" + url.QueryEscape(" id , port "), ";;;,"},
	} {
		f.Add(seed.query, seed.accept)
	}
	h := newHarness(f)
	for i := range 12 {
		h.register(f, "web", fmt.Sprintf(`{"id":"web-%02d","address":"10.0.0.%d","port":80,"tags":["v1"],"metadata":{"zone":"a"}}`, i, i))
	}
	known := []string{"service", "id", "address", "port", "tags", "metadata", "ttl_seconds", "status", "registered_at", "last_heartbeat", "expires_at", "checks"}
	f.Fuzz(func(t *testing.T, query, accept string) {
		for _, path := range []string{"/api/v1/services/web", "/api/v1/services"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.Path, req.URL.RawQuery = path, query
			req.Header.Set("Accept-Encoding", accept)
			rec := httptest.NewRecorder()
			h.api.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if rec.Header().Get("Content-Encoding") == "gzip" {
				body = gunzip(t, body)
			}
			switch {
			case rec.Code >= 500:
				t.Fatalf("%s?%s: %d %s", path, query, rec.Code, body)
			case rec.Code == http.StatusOK:
				if !json.Valid(body) {
					t.Fatalf("%s?%s: invalid JSON %q", path, query, body)
				}
				if path == "/api/v1/services/web" {
					for _, keys := range instanceKeys(t, body) {
						for _, k := range keys {
							if !slices.Contains(known, k) {
								t.Fatalf("unknown key %q", k)
							}
						}
					}
				}
			default:
				var e apiError
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
					t.Fatalf("%s?%s: %d without a JSON error: %q", path, query, rec.Code, body)
				}
			}
		}
	})
}
