package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/registry"
)

// FuzzRegister sends arbitrary service names and bodies to the register
// route. Whatever arrives, the API never answers 5xx or panics, a refused
// request leaves the store and the view as they were, and an accepted one
// stored a valid instance.
func FuzzRegister(f *testing.F) {
	for _, seed := range []struct{ service, body string }{
		{"web", `{"id":"a","address":"10.0.0.1","port":80,"tags":["v1"],"metadata":{"k":"v"},"ttl_seconds":30}`},
		{"web", `{"address":"db.example.com.","port":65535}`},
		{"web", `{"address":"::1","port":1,"ttl_seconds":86400}`},
		{"web", `{"address":"10.0.0.1","port":0}`},
		{"web", `{"address":"10.0.0.1","port":"80"}`},
		{"web", `{"address":"10.0.0.1","port":80,"extra":1}`},
		{"web", `{"address":"10.0.0.1","port":80} trailing`},
		{"web", `{"address":"a..b","port":80}`},
		{"web", `{"address":"10.0.0.1","port":80,"tags":[""]}`},
		{"web", `{"address":"10.0.0.1","port":80,"metadata":{"":"v"}}`},
		{"web", `{"id":"../x","address":"10.0.0.1","port":80}`},
		{"web", `null`},
		{"web", `[]`},
		{"web", `{"port":1e400}`},
		{"web", "\xff\xfe"},
		{"", `{"address":"10.0.0.1","port":80}`},
		{"..", `{"address":"10.0.0.1","port":80}`},
		{"a/b", `{"address":"10.0.0.1","port":80}`},
		{"ünï", `{"address":"10.0.0.1","port":80}`},
		{strings.Repeat("s", 200), `{"address":"10.0.0.1","port":80}`},
	} {
		f.Add(seed.service, seed.body)
	}
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, service, body string) {
		before := h.snapshot(t)
		catalogIndex := h.view.CatalogIndex()

		target := "/api/v1/services/" + url.PathEscape(service) + "/instances"
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.api.ServeHTTP(rec, req)

		switch {
		case rec.Code >= 500:
			t.Fatalf("%q %q: %d %s", service, body, rec.Code, rec.Body)
		case rec.Code == http.StatusOK || rec.Code == http.StatusCreated:
			var in registry.Instance
			if err := json.Unmarshal(rec.Body.Bytes(), &in); err != nil {
				t.Fatalf("accepted, but the answer does not decode: %s", rec.Body)
			}
			reg := registry.Registration{ID: in.ID, Address: in.Address, Port: in.Port, Tags: in.Tags, Metadata: in.Metadata, TTLSeconds: in.TTLSeconds}
			if err := reg.Validate(in.Service); err != nil {
				t.Fatalf("accepted an invalid instance %+v: %v", in, err)
			}
		default:
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
			}
			if after := h.snapshot(t); !reflect.DeepEqual(before, after) {
				t.Fatalf("refused %q %q (%s) but the store changed", service, body, rec.Body)
			}
			if h.view.CatalogIndex() != catalogIndex {
				t.Fatalf("refused %q %q but the view changed", service, body)
			}
		}
	})
}
