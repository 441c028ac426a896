package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/registry"
)

// FuzzRegisterChecks sends registrations whose checks (and address, which
// the checks' targets are resolved against) are arbitrary. The API never
// answers 5xx or panics; a refused registration leaves the store and the
// view as they were; an accepted one stored checks that pass validation
// under the default policy, with every default filled in, and that aim at
// no forbidden address.
func FuzzRegisterChecks(f *testing.F) {
	for _, seed := range []struct{ address, checks string }{
		{"10.0.0.1", `[{"http":"/healthz","interval":"10s","timeout":"2s"},{"tcp":":5432","interval":"5s"}]`},
		{"10.0.0.1", `[{"http":":8081/ready","method":"HEAD","headers":{"Host":"web","X-A":"b"},"successes_before_passing":2,"failures_before_critical":5,"deregister_critical_after":"1h"}]`},
		{"10.0.0.1", `[{"http":"https://10.0.0.1:8443/h","tls_skip_verify":true,"interval":"30"}]`},
		{"db.example.com", `[{"tcp":"db.example.com:5432"}]`},
		{"::1", `[{"http":"/h"},{"tcp":"[::1]:22"}]`},
		{"fe80::1%eth0", `[{"http":"/h"}]`},
		{"169.254.169.254", `[{"tcp":":80"}]`},
		{"10.0.0.1", `[{"http":"http://169.254.169.254/latest/meta-data/"}]`},
		{"10.0.0.1", `[{"http":"http://metadata.google.internal/"}]`},
		{"10.0.0.1", `[{"tcp":"[fd00:ec2::254]:80"}]`},
		{"10.0.0.1", `[{"http":"http://example.com/"}]`},
		{"10.0.0.1", `[{"http":"http://user:pw@10.0.0.1/"}]`},
		{"10.0.0.1", `[{"http":"/h","tcp":":1"}]`},
		{"10.0.0.1", `[{}]`},
		{"10.0.0.1", `[{"tcp":":0"}]`},
		{"10.0.0.1", `[{"tcp":":5432","method":"GET"}]`},
		{"10.0.0.1", `[{"http":"/h","method":"get"}]`},
		{"10.0.0.1", `[{"http":"/h","headers":{"Bad Name":"v"}}]`},
		{"10.0.0.1", `[{"http":"/h","headers":{"X":"a\u0000b"}}]`},
		{"10.0.0.1", `[{"http":"/h\u001b[2J"}]`},
		{"10.0.0.1", `[{"http":"/h","interval":"500ms"}]`},
		{"10.0.0.1", `[{"http":"/h","interval":"25h"}]`},
		{"10.0.0.1", `[{"http":"/h","interval":"5s","timeout":"6s"}]`},
		{"10.0.0.1", `[{"http":"/h","timeout":"0s"}]`},
		{"10.0.0.1", `[{"http":"/h","interval":"9223372036854775807"}]`},
		{"10.0.0.1", `[{"http":"/h","successes_before_passing":-1}]`},
		{"10.0.0.1", `[{"http":"/h","failures_before_critical":101}]`},
		{"10.0.0.1", `[{"http":"/h","deregister_critical_after":"721h"}]`},
		{"10.0.0.1", `[{"http":"/h","status":"passing"}]`},
		{"10.0.0.1", `[{"http":"/h","last_checked":"2026-01-01T00:00:00Z"}]`},
		{"10.0.0.1", `[{"http":"/h","unknown":1}]`},
		{"10.0.0.1", `[{"http":"/1"},{"http":"/2"},{"http":"/3"},{"http":"/4"},{"http":"/5"},{"http":"/6"},{"http":"/7"},{"http":"/8"},{"http":"/9"}]`},
		{"10.0.0.1", `{"http":"/h"}`},
		{"10.0.0.1", `[null]`},
		{"10.0.0.1", `null`},
		{"10.0.0.1", `[{"http":"` + strings.Repeat("/a", 300) + `"}]`},
	} {
		f.Add(seed.address, seed.checks)
	}
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, address, checks string) {
		addr, err := json.Marshal(address)
		if err != nil {
			t.Skip()
		}
		body := `{"id":"c","address":` + string(addr) + `,"port":8080,"checks":` + checks + `}`
		before := h.snapshot(t)
		catalogIndex := h.view.CatalogIndex()

		req := httptest.NewRequest(http.MethodPost, "/api/v1/services/web/instances", strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.api.ServeHTTP(rec, req)

		switch {
		case rec.Code >= 500:
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		case rec.Code == http.StatusOK || rec.Code == http.StatusCreated:
			var in registry.Instance
			if err := json.Unmarshal(rec.Body.Bytes(), &in); err != nil {
				t.Fatalf("accepted, but the answer does not decode: %s", rec.Body)
			}
			reg := registry.Registration{ID: in.ID, Address: in.Address, Port: in.Port, TTLSeconds: in.TTLSeconds, Checks: registry.CheckDefinitions(in.Checks)}
			if err := reg.Validate(in.Service); err != nil {
				t.Fatalf("%s: accepted an invalid instance %+v: %v", body, in, err)
			}
			if len(in.Checks) > 0 && (in.Status != registry.StatusCritical || in.TTLSeconds < registry.MinCheckedTTLSeconds) {
				t.Fatalf("%s: an instance with checks stored %s with TTL %d, want critical and at least %d", body, in.Status, in.TTLSeconds, registry.MinCheckedTTLSeconds)
			}
			for i, c := range in.Checks {
				if c.Interval == "" || c.Timeout == "" || c.DeregisterCriticalAfter == "" || c.SuccessesBeforePassing == 0 ||
					c.FailuresBeforeCritical == 0 || (c.HTTP != "" && c.Method == "") {
					t.Fatalf("%s: check %d stored without its defaults: %+v", body, i, c)
				}
				if _, err := registry.CheckTarget(c, in.Address, in.Port, registry.CheckPolicy{}); err != nil {
					t.Fatalf("%s: check %d stored with a refused target: %v", body, i, err)
				}
			}
		default:
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
			}
			if after := h.snapshot(t); !reflect.DeepEqual(before, after) {
				t.Fatalf("refused %s (%s) but the store changed", body, rec.Body)
			}
			if h.view.CatalogIndex() != catalogIndex {
				t.Fatalf("refused %s but the view changed", body)
			}
		}
	})
}
