package httpapi_test

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// targetGroup is one group of Prometheus's HTTP SD answer.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// sdAnswer decodes a discovery answer, failing the test unless it is a 200
// JSON list.
func sdAnswer(t *testing.T, rec *httptest.ResponseRecorder) []targetGroup {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var groups []targetGroup
	decode(t, rec, &groups)
	return groups
}

// sdIDs lists the instance ids of an answer's groups, in its order.
func sdIDs(groups []targetGroup) []string {
	out := []string{}
	for _, g := range groups {
		out = append(out, g.Labels["__meta_saga_instance_id"])
	}
	return out
}

func TestPrometheusSDLabels(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	groups := sdAnswer(t, h.do(t, http.MethodGet, "/api/v1/sd/prometheus", ""))
	want := []targetGroup{
		{Targets: []string{"10.0.1.1:5432"}, Labels: map[string]string{
			"__meta_saga_service":     "db",
			"__meta_saga_instance_id": "d",
			"__meta_saga_status":      "passing",
			"__meta_saga_tags":        ",,", // as Consul SD has it for no tags
		}},
		{Targets: []string{"10.0.0.1:80"}, Labels: map[string]string{
			"__meta_saga_service":       "web",
			"__meta_saga_instance_id":   "a",
			"__meta_saga_status":        "passing",
			"__meta_saga_tags":          ",v1,eu,",
			"__meta_saga_metadata_zone": "a",
			"__meta_saga_metadata_rack": "1",
		}},
		{Targets: []string{"10.0.0.2:80"}, Labels: map[string]string{
			"__meta_saga_service":       "web",
			"__meta_saga_instance_id":   "b",
			"__meta_saga_status":        "warning",
			"__meta_saga_tags":          ",v1,",
			"__meta_saga_metadata_zone": "b",
		}},
	}
	if !reflect.DeepEqual(groups, want) {
		t.Fatalf("got %+v\nwant %+v", groups, want)
	}
}

func TestPrometheusSDEmptyRegistry(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodGet, "/api/v1/sd/prometheus", "")
	sdAnswer(t, rec)
	if body := rec.Body.String(); body != "[]\n" {
		t.Fatalf("body %q, want []", body)
	}
	rec = h.do(t, http.MethodGet, "/api/v1/sd/prometheus?service=none", "")
	if body := rec.Body.String(); rec.Code != http.StatusOK || body != "[]\n" {
		t.Fatalf("unknown service: %d %q, want 200 []", rec.Code, body)
	}
}

func TestPrometheusSDFilters(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"d", "a", "b"}},
		{"?service=web", []string{"a", "b"}},
		{"?service=web&service=db&service=web", []string{"d", "a", "b"}},
		{"?service=web&status=any", []string{"a", "b", "c"}},
		{"?service=web&status=passing", []string{"a"}},
		{"?tag=eu", []string{"a"}},
		{"?tag=eu&status=any", []string{"a", "c"}},
		{"?meta=zone:a&meta=rack:1", []string{"a"}},
		{"?service=db&tag=v1", []string{}},
		{"?service=none", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, "/api/v1/sd/prometheus"+tt.query, "")
			if got := sdIDs(sdAnswer(t, rec)); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if rec.Header().Get("X-Saga-Index") == "" {
				t.Fatal("no X-Saga-Index")
			}
		})
	}
}

func TestPrometheusSDBadQuery(t *testing.T) {
	h := newHarness(t)
	for query, field := range map[string]string{
		"status=critical":                     "status",
		"tag=":                                "tag",
		"meta=zone":                           "meta",
		"meta=:a":                             "meta",
		"service=_web":                        "service",
		"service=web&service=":                "service",
		"tag=%zz":                             "query",
		"service=web&tag=%FF%FE":              "tag",
		"service=" + strings.Repeat("a", 129): "service",
	} {
		t.Run(query, func(t *testing.T) {
			wantError(t, h.do(t, http.MethodGet, "/api/v1/sd/prometheus?"+query, ""), 400, "invalid_argument", field)
		})
	}
}

func TestPrometheusSDMetadataLabelNames(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80,"metadata":{
		"team.name":"payments","app/version":"1.2","1st":"yes","a-b":"dash","a_b":"underscore","a.c":"dot","a-c":"dash"}}`)
	groups := sdAnswer(t, h.do(t, http.MethodGet, "/api/v1/sd/prometheus", ""))
	if len(groups) != 1 {
		t.Fatalf("%d groups, want 1", len(groups))
	}
	got := map[string]string{}
	for name, value := range groups[0].Labels {
		if rest, ok := strings.CutPrefix(name, "__meta_saga_metadata_"); ok {
			got[rest] = value
		}
	}
	want := map[string]string{
		"team_name":   "payments",
		"app_version": "1.2",
		"1st":         "yes",
		"a_b":         "underscore", // the key that is already the label name wins
		"a_c":         "dash",       // else the first key in sorted order ("a-c" < "a.c")
	}
	if !maps.Equal(got, want) {
		t.Fatalf("metadata labels %v, want %v", got, want)
	}
}

func TestPrometheusSDIPv6Target(t *testing.T) {
	h := newHarness(t)
	h.register(t, "node", `{"id":"v6","address":"2001:db8::1","port":9100}`)
	h.register(t, "node", `{"id":"v4","address":"192.0.2.1","port":9100}`)
	h.register(t, "node", `{"id":"name","address":"node-1.example.com","port":9100}`)
	groups := sdAnswer(t, h.do(t, http.MethodGet, "/api/v1/sd/prometheus?service=node", ""))
	var targets []string
	for _, g := range groups {
		targets = append(targets, g.Targets...)
	}
	want := []string{"node-1.example.com:9100", "192.0.2.1:9100", "[2001:db8::1]:9100"}
	if !slices.Equal(targets, want) {
		t.Fatalf("targets %v, want %v", targets, want)
	}
}

func TestPrometheusSDScopedToken(t *testing.T) {
	h := newAuthHarness(t)
	for _, svc := range []string{"web", "webhooks", "db"} {
		rec := h.call(t, "admin", "127.0.0.1", http.MethodPost, "/api/v1/services/"+svc+"/instances", `{"id":"`+svc+`-1","address":"10.0.0.1","port":80}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("register %s: %d %s", svc, rec.Code, rec.Body)
		}
	}
	services := func(groups []targetGroup) []string {
		var out []string
		for _, g := range groups {
			out = append(out, g.Labels["__meta_saga_service"])
		}
		return out
	}
	// An unscoped read token sees every service; a scoped one those in scope.
	if got := services(sdAnswer(t, h.call(t, "read", "10.1.1.1", http.MethodGet, "/api/v1/sd/prometheus", ""))); !slices.Equal(got, []string{"db", "web", "webhooks"}) {
		t.Fatalf("read token sees %v", got)
	}
	if got := services(sdAnswer(t, h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/sd/prometheus", ""))); !slices.Equal(got, []string{"web", "webhooks"}) {
		t.Fatalf("web* token sees %v, want [web webhooks]", got)
	}
	if got := services(sdAnswer(t, h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/sd/prometheus?service=web", ""))); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("web* token asking for web sees %v", got)
	}
	// Naming a service outside the scope is refused, as for events.
	wantError(t, h.call(t, "web-writer", "10.1.1.1", http.MethodGet, "/api/v1/sd/prometheus?service=web&service=db", ""), 403, "permission_denied", "")
	// Without a token, nothing.
	wantError(t, h.call(t, "", "127.0.0.1", http.MethodGet, "/api/v1/sd/prometheus", ""), 401, "unauthenticated", "")
}
