package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
)

// seed registers a small service "web" with a passing, a warning and a
// critical instance, and a service "db".
func seed(t *testing.T, h *harness) {
	t.Helper()
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80,"tags":["v1","eu"],"metadata":{"zone":"a","rack":"1"}}`)
	h.register(t, "web", `{"id":"b","address":"10.0.0.2","port":80,"tags":["v1"],"metadata":{"zone":"b"}}`)
	h.register(t, "web", `{"id":"c","address":"10.0.0.3","port":80,"tags":["v2","eu"],"metadata":{"zone":"a"}}`)
	h.register(t, "db", `{"id":"d","address":"10.0.1.1","port":5432}`)
	for id, status := range map[string]string{"b": "warning", "c": "critical"} {
		rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/"+id+"/heartbeat", `{"status":"`+status+`"}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("set %s %s: %d", id, status, rec.Code)
		}
	}
}

func TestLookupFilters(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"a", "b"}},
		{"?status=passing", []string{"a"}},
		{"?status=any", []string{"a", "b", "c"}},
		{"?tag=v1", []string{"a", "b"}},
		{"?tag=v1&tag=eu", []string{"a"}},
		{"?tag=eu&status=any", []string{"a", "c"}},
		{"?meta=zone:a&status=any", []string{"a", "c"}},
		{"?meta=zone:a&meta=rack:1", []string{"a"}},
		{"?meta=zone:b&tag=eu", []string{}},
		{"?tag=none", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, "/api/v1/services/web"+tt.query, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			var got lookupAnswer
			decode(t, rec, &got)
			if got.Service != "web" || !slices.Equal(ids(got.Instances), tt.want) {
				t.Fatalf("got %s %v, want %v", got.Service, ids(got.Instances), tt.want)
			}
			if hdr := rec.Header().Get("X-Saga-Index"); hdr != strconv.FormatUint(got.Index, 10) || got.Index == 0 {
				t.Fatalf("X-Saga-Index %q, body index %d", hdr, got.Index)
			}
		})
	}

	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web?status=critical", ""), 400, "invalid_argument", "status")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web?meta=zone", ""), 400, "invalid_argument", "meta")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web?meta=:a", ""), 400, "invalid_argument", "meta")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web?tag=", ""), 400, "invalid_argument", "tag")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web?tag=%zz", ""), 400, "invalid_argument", "query")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/_web", ""), 400, "invalid_argument", "service")
}

func TestLookupOfAnUnknownServiceIsEmpty(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodGet, "/api/v1/services/nobody", "")
	if rec.Code != http.StatusOK || rec.Header().Get("X-Saga-Index") != "0" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	if body := strings.TrimSpace(rec.Body.String()); body != `{"service":"nobody","index":0,"instances":[]}` {
		t.Fatalf("body %s", body)
	}
}

func TestAnExpiredInstanceIsNeverReturnedEvenBeforeReaping(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"short","address":"10.0.0.1","port":80,"ttl_seconds":5}`)
	h.register(t, "web", `{"id":"long","address":"10.0.0.2","port":80,"ttl_seconds":60}`)
	// Warm the cache with both instances in the answer.
	if rec := h.do(t, http.MethodGet, "/api/v1/services/web", ""); !strings.Contains(rec.Body.String(), `"short"`) {
		t.Fatalf("before expiry: %s", rec.Body)
	}

	h.clock.Advance(5 * time.Second) // exactly the deadline; nothing reaps
	var got lookupAnswer
	decode(t, h.do(t, http.MethodGet, "/api/v1/services/web", ""), &got)
	if !slices.Equal(ids(got.Instances), []string{"long"}) {
		t.Fatalf("lookup after the deadline: %v", ids(got.Instances))
	}
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web/instances/short", ""), 404, "not_found", "")
	if n := len(h.snapshot(t).Services["web"].Instances); n != 2 {
		t.Fatalf("the store holds %d instances; this test needs the expired one not yet reaped", n)
	}

	h.clock.Advance(time.Minute)
	rec := h.do(t, http.MethodGet, "/api/v1/services", "")
	if body := strings.TrimSpace(rec.Body.String()); !strings.HasSuffix(body, `"services":[]}`) {
		t.Fatalf("catalogue lists a service without live instances: %s", body)
	}
	if rec := h.do(t, http.MethodGet, "/api/v1/services/web/health", ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("service health with only expired instances: %d", rec.Code)
	}
}

func TestCatalogue(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	rec := h.do(t, http.MethodGet, "/api/v1/services", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	type entry struct {
		Name      string `json:"name"`
		Instances int    `json:"instances"`
		Passing   int    `json:"passing"`
	}
	var got struct {
		Index    uint64  `json:"index"`
		Services []entry `json:"services"`
	}
	decode(t, rec, &got)
	// web: 3 registers + 2 status changes; db: 1 register.
	if got.Index != 6 || rec.Header().Get("X-Saga-Index") != "6" {
		t.Fatalf("catalogue index %d, header %q, want 6", got.Index, rec.Header().Get("X-Saga-Index"))
	}
	want := []entry{{"db", 1, 1}, {"web", 3, 1}}
	if !slices.Equal(got.Services, want) {
		t.Fatalf("services %+v, want %+v", got.Services, want)
	}
}

func TestServiceHealth(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	rec := h.do(t, http.MethodGet, "/api/v1/services/web/health", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("web health: %d %s", rec.Code, rec.Body)
	}
	if body := strings.TrimSpace(rec.Body.String()); body != `{"service":"web","instances":3,"passing":1,"warning":1,"critical":1}` {
		t.Fatalf("body %s", body)
	}
	rec = h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"status":"critical"}`)
	if rec.Code != http.StatusOK {
		t.Fatal(rec.Code)
	}
	rec = h.do(t, http.MethodGet, "/api/v1/services/web/health", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"passing":0`) {
		t.Fatalf("no passing instance: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(t, http.MethodGet, "/api/v1/services/nobody/health", ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("unknown service: %d", rec.Code)
	}
}

// serve runs one request in the background and reports its recorder when
// the handler returns.
func serve(ctx context.Context, h *harness, target string) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.api.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil))
		done <- rec
	}()
	return done
}

func TestBlockingLookupWakesOnlyForItsService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
		h.register(t, "db", `{"id":"d","address":"10.0.1.1","port":5432}`)

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		web := serve(ctx, h, "/api/v1/services/web?index=1&wait=1m")
		db := serve(ctx, h, "/api/v1/services/db?index=1&wait=1m")
		catalog := serve(ctx, h, "/api/v1/services?index=2&wait=1m")
		synctest.Wait()
		for name, ch := range map[string]<-chan *httptest.ResponseRecorder{"web": web, "db": db, "catalogue": catalog} {
			select {
			case rec := <-ch:
				t.Fatalf("%s answered before any change: %d %s", name, rec.Code, rec.Body)
			default:
			}
		}

		began := time.Now()
		h.register(t, "web", `{"id":"b","address":"10.0.0.2","port":80}`)
		synctest.Wait()
		select {
		case rec := <-web:
			var got lookupAnswer
			decode(t, rec, &got)
			if got.Index != 2 || rec.Header().Get("X-Saga-Index") != "2" || len(got.Instances) != 2 {
				t.Fatalf("woken lookup: %s", rec.Body)
			}
		default:
			t.Fatal("the web watcher did not wake on a change to web")
		}
		select {
		case rec := <-catalog:
			if rec.Header().Get("X-Saga-Index") != "3" {
				t.Fatalf("catalogue woke with index %s", rec.Header().Get("X-Saga-Index"))
			}
		default:
			t.Fatal("the catalogue watcher did not wake")
		}
		select {
		case <-db:
			t.Fatal("the db watcher woke on a change to web")
		default:
		}
		if time.Since(began) != 0 {
			t.Fatal("the wake-up waited on a timer")
		}

		// Without a change, the wait ends after `wait` with the same index.
		rec := <-db
		if rec.Code != http.StatusOK || rec.Header().Get("X-Saga-Index") != "1" {
			t.Fatalf("timed-out lookup: %d %v", rec.Code, rec.Header())
		}
		if waited := time.Since(began); waited != time.Minute {
			t.Fatalf("waited %v, want the 1m asked for", waited)
		}
	})
}

func TestBlockingQueryParameters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)

		for _, tt := range []struct{ target, field string }{
			{"/api/v1/services/web?index=x", "index"},
			{"/api/v1/services/web?index=-1", "index"},
			{"/api/v1/services/web?index=1&wait=soon", "wait"},
			{"/api/v1/services/web?index=1&wait=-5s", "wait"},
			{"/api/v1/services/web?index=1&wait=0", "wait"},
			{"/api/v1/services?index=1&wait=1h30x", "wait"},
			{"/api/v1/services?index=1.5", "index"},
		} {
			wantError(t, h.do(t, http.MethodGet, tt.target, ""), 400, "invalid_argument", tt.field)
		}

		waits := []struct {
			target string
			want   time.Duration
		}{
			{"/api/v1/services/web?index=1", 5 * time.Minute},          // the default wait
			{"/api/v1/services/web?index=1&wait=90", 90 * time.Second}, // bare seconds
			{"/api/v1/services/web?index=1&wait=1h", 10 * time.Minute}, // capped
			{"/api/v1/services/web?index=7&wait=1m", 0},                // ahead of the store: at once
			{"/api/v1/services/web?index=0&wait=1m", 0},                // behind: at once
			{"/api/v1/services/web?wait=1m", 0},                        // no index: not blocking
		}
		for _, tt := range waits {
			began := time.Now()
			rec := h.do(t, http.MethodGet, tt.target, "")
			if rec.Code != http.StatusOK || rec.Header().Get("X-Saga-Index") != "1" {
				t.Fatalf("%s: %d %v", tt.target, rec.Code, rec.Header())
			}
			if waited := time.Since(began); waited != tt.want {
				t.Fatalf("%s waited %v, want %v", tt.target, waited, tt.want)
			}
		}
	})
}

func TestAClientThatLeavesEndsItsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := serve(ctx, h, "/api/v1/services/web?index=0&wait=10m")
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the handler kept waiting for a client that left")
		}
	})
}

func TestGetInstance(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80,"tags":["x"]}`)
	rec := h.do(t, http.MethodGet, "/api/v1/services/web/instances/a", "")
	if rec.Code != http.StatusOK || rec.Header().Get("X-Saga-Index") != "1" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var in registry.Instance
	decode(t, rec, &in)
	if in.ID != "a" || in.Service != "web" || !slices.Equal(in.Tags, []string{"x"}) {
		t.Fatalf("instance %+v", in)
	}
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web/instances/b", ""), 404, "not_found", "")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/other/instances/a", ""), 404, "not_found", "")
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	h := newHarness(t)
	wantError(t, h.do(t, http.MethodGet, "/api/v2/services", ""), 404, "not_found", "")
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web/instances", ""), 405, "method_not_allowed", "")
	rec := h.do(t, http.MethodPatch, "/api/v1/services/web/instances/a", "")
	wantError(t, rec, 405, "method_not_allowed", "")
	if allow := rec.Header().Get("Allow"); allow != "GET, HEAD, DELETE" {
		t.Fatalf("Allow %q", allow)
	}
}

// failingStore answers every registration with err.
type failingStore struct {
	registry.Store
	err error
}

func (s failingStore) Register(context.Context, registry.Instance) (registry.Event, error) {
	return registry.Event{}, fmt.Errorf("write record: %w", s.err)
}

func TestStoreFailuresMapToStatuses(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{errors.New("disk on fire at /secret/path"), http.StatusInternalServerError, "internal"},
		{registry.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable"},
	}
	for _, tt := range tests {
		api := httpapi.New(httpapi.Options{Store: failingStore{h.store, tt.err}, View: h.view, Clock: h.clock})
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/services/web/instances", strings.NewReader(`{"address":"10.0.0.1","port":80}`)))
		wantError(t, rec, tt.status, tt.code, "")
		if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "write record") {
			t.Fatalf("store details leaked: %s", rec.Body)
		}
	}
	if h.view.CatalogIndex() != 0 {
		t.Fatal("a failed write reached the view")
	}
}

// Query parameters that are not UTF-8 are refused naming the parameter,
// on a lookup and on the catalogue alike.
func TestInvalidUTF8InTheQueryIsRefused(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	tests := []struct{ target, field string }{
		{"/api/v1/services/web?tag=v%FF", "tag"},
		{"/api/v1/services/web?tag=v1&tag=%C3", "tag"},
		{"/api/v1/services/web?meta=zone:%FF", "meta"},
		{"/api/v1/services/web?meta=z%FFne:a", "meta"},
		{"/api/v1/services/web?status=any%FF", "status"},
		{"/api/v1/services/web?index=1%FF&wait=1s", "index"},
		{"/api/v1/services/web?wait=%FF", "wait"},
		{"/api/v1/services/web?other=%FF", "other"}, // ignored, but not if it is not text
		{"/api/v1/services/web?%FF=1", "query"},
		{"/api/v1/services?index=%ED%A0%80", "index"},
		{"/api/v1/services?other=%FF", "other"},
		{"/api/v1/services?%FF", "query"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			wantError(t, h.do(t, http.MethodGet, tt.target, ""), 400, "invalid_argument", tt.field)
		})
	}
}

// The catalogue takes index and wait. A lookup's filters are refused, not
// ignored: the catalogue would answer as if they held. Unknown parameters
// are ignored, as a lookup ignores them.
func TestCatalogueQueryParameters(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	want := h.do(t, http.MethodGet, "/api/v1/services", "").Body.String()
	for _, tt := range []struct{ target, field string }{
		{"/api/v1/services?status=bogus", "status"},
		{"/api/v1/services?status=passing", "status"},
		{"/api/v1/services?status=", "status"},
		{"/api/v1/services?tag=", "tag"},
		{"/api/v1/services?tag=v1", "tag"},
		{"/api/v1/services?meta=zone:a", "meta"},
		{"/api/v1/services?meta=zone", "meta"},
		{"/api/v1/services?index=x", "index"},
		{"/api/v1/services?index=1&wait=0", "wait"},
		{"/api/v1/services?wait=soon", "wait"},
		{"/api/v1/services?tag=%zz", "query"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, tt.target, "")
			wantError(t, rec, 400, "invalid_argument", tt.field)
			if tt.field == "status" || tt.field == "tag" || tt.field == "meta" {
				var e apiError
				decode(t, rec, &e)
				if !strings.Contains(e.Error.Message, "not supported on the catalogue") {
					t.Errorf("message %q does not say the catalogue has no such filter", e.Error.Message)
				}
			}
		})
	}
	for _, target := range []string{"/api/v1/services?other=1", "/api/v1/services?_=1700000000", "/api/v1/services?wait=30s", "/api/v1/services?index=0&wait=1s"} {
		rec := h.do(t, http.MethodGet, target, "")
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("%s: %d %s, want 200 and the catalogue", target, rec.Code, rec.Body)
		}
	}
	// The lookup also ignores parameters it does not know.
	if rec := h.do(t, http.MethodGet, "/api/v1/services/web?other=1", ""); rec.Code != http.StatusOK {
		t.Errorf("lookup with an unknown parameter: %d %s", rec.Code, rec.Body)
	}
}
