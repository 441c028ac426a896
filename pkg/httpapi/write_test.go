package httpapi_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

func TestRegisterCreatesThenReplaces(t *testing.T) {
	h := newHarness(t)
	body := `{"id":"web-1","address":"10.0.0.5","port":8080,"tags":["v1"],"metadata":{"zone":"a"},"ttl_seconds":20}`
	rec := h.do(t, http.MethodPost, "/api/v1/services/web/instances", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("first register: %d %s", rec.Code, rec.Body)
	}
	if loc := rec.Header().Get("Location"); loc != "/api/v1/services/web/instances/web-1" {
		t.Fatalf("Location %q", loc)
	}
	var got struct {
		registry.Instance
		HeartbeatIntervalSeconds int `json:"heartbeat_interval_seconds"`
	}
	decode(t, rec, &got)
	want := registry.Instance{
		Service: "web", ID: "web-1", Address: "10.0.0.5", Port: 8080,
		Tags: []string{"v1"}, Metadata: map[string]string{"zone": "a"}, TTLSeconds: 20,
		Status: registry.StatusPassing, RegisteredAt: epoch, LastHeartbeat: epoch, ExpiresAt: epoch.Add(20 * time.Second),
	}
	if !reflect.DeepEqual(got.Instance, want) {
		t.Fatalf("instance\n got %+v\nwant %+v", got.Instance, want)
	}
	// The TTL is 20 s, so the configured 30 s interval would let it lapse.
	if got.HeartbeatIntervalSeconds != 10 {
		t.Fatalf("heartbeat_interval_seconds = %d, want 10 (half the TTL)", got.HeartbeatIntervalSeconds)
	}
	for _, field := range []string{`"registered_at":"2026-03-04T05:06:07Z"`, `"expires_at":"2026-03-04T05:06:27Z"`} {
		if !strings.Contains(rec.Body.String(), field) {
			t.Fatalf("body lacks %s: %s", field, rec.Body)
		}
	}

	rec = h.do(t, http.MethodPost, "/api/v1/services/web/instances", `{"id":"web-1","address":"10.0.0.6","port":8081}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("replace: %d %s", rec.Code, rec.Body)
	}
	decode(t, rec, &got)
	if got.Address != "10.0.0.6" || got.TTLSeconds != 60 || got.HeartbeatIntervalSeconds != 30 {
		t.Fatalf("replaced instance %+v", got)
	}
	if in, ok := h.view.Instance("web", "web-1"); !ok || in.Address != "10.0.0.6" {
		t.Fatal("the view does not show the write at once")
	}
}

func TestRegisterGeneratesAMissingID(t *testing.T) {
	h := newHarness(t)
	in := h.register(t, "web", `{"address":"db.example.com","port":5432}`)
	if err := registry.ValidateName("id", in.ID); err != nil || len(in.ID) != 16 {
		t.Fatalf("generated id %q: %v", in.ID, err)
	}
	rec := h.do(t, http.MethodGet, "/api/v1/services/web/instances/"+in.ID, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("get generated instance: %d %s", rec.Code, rec.Body)
	}
}

func TestBadRegistrationIsRefusedNamingTheFieldAndChangesNothing(t *testing.T) {
	manyTags := `["` + strings.Repeat(`t","`, 64) + `t"]`
	manyMeta := "{" + strings.TrimSuffix(strings.Repeat(`"k":"v",`, 1), ",")
	for i := range 65 {
		manyMeta += fmt.Sprintf(`,"k%d":"v"`, i)
	}
	manyMeta += "}"
	tests := []struct {
		name, service, body string
		status              int
		code, field         string
	}{
		{"malformed JSON", "web", `{"address":`, 400, "invalid_argument", "body"},
		{"syntax error", "web", `{"address" "x"}`, 400, "invalid_argument", "body"},
		{"not an object", "web", `[1,2]`, 400, "invalid_argument", "body"},
		{"empty body", "web", ``, 400, "invalid_argument", "body"},
		{"trailing data", "web", `{"address":"a","port":1} {}`, 400, "invalid_argument", "body"},
		{"port as string", "web", `{"address":"10.0.0.1","port":"80"}`, 400, "invalid_argument", "port"},
		{"port fraction", "web", `{"address":"10.0.0.1","port":80.5}`, 400, "invalid_argument", "port"},
		{"tags not a list", "web", `{"address":"10.0.0.1","port":80,"tags":"v1"}`, 400, "invalid_argument", "tags"},
		{"metadata value not a string", "web", `{"address":"10.0.0.1","port":80,"metadata":{"zone":1}}`, 400, "invalid_argument", "metadata"},
		{"unknown field", "web", `{"address":"10.0.0.1","port":80,"colour":"red"}`, 400, "invalid_argument", "colour"},
		{"bad service", "-web", `{"address":"10.0.0.1","port":80}`, 400, "invalid_argument", "service"},
		{"service too long", strings.Repeat("s", 129), `{"address":"10.0.0.1","port":80}`, 400, "invalid_argument", "service"},
		{"bad id", "web", `{"id":"a/b","address":"10.0.0.1","port":80}`, 400, "invalid_argument", "id"},
		{"missing address", "web", `{"port":80}`, 400, "invalid_argument", "address"},
		{"bad address", "web", `{"address":"not_a_host!","port":80}`, 400, "invalid_argument", "address"},
		{"missing port", "web", `{"address":"10.0.0.1"}`, 400, "invalid_argument", "port"},
		{"port too big", "web", `{"address":"10.0.0.1","port":65536}`, 400, "invalid_argument", "port"},
		{"too many tags", "web", `{"address":"10.0.0.1","port":80,"tags":` + manyTags + `}`, 400, "invalid_argument", "tags"},
		{"empty tag", "web", `{"address":"10.0.0.1","port":80,"tags":[""]}`, 400, "invalid_argument", "tags[0]"},
		{"long tag", "web", `{"address":"10.0.0.1","port":80,"tags":["` + strings.Repeat("t", 129) + `"]}`, 400, "invalid_argument", "tags[0]"},
		{"too many metadata keys", "web", `{"address":"10.0.0.1","port":80,"metadata":` + manyMeta + `}`, 400, "invalid_argument", "metadata"},
		{"long metadata value", "web", `{"address":"10.0.0.1","port":80,"metadata":{"k":"` + strings.Repeat("v", 513) + `"}}`, 400, "invalid_argument", "metadata.k"},
		{"ttl too long", "web", `{"address":"10.0.0.1","port":80,"ttl_seconds":86401}`, 400, "invalid_argument", "ttl_seconds"},
		{"negative ttl", "web", `{"address":"10.0.0.1","port":80,"ttl_seconds":-5}`, 400, "invalid_argument", "ttl_seconds"},
		{"body too large", "web", `{"address":"10.0.0.1","port":80,"metadata":{"k":"` + strings.Repeat("v", 70<<10) + `"}}`, 413, "payload_too_large", "body"},
		{"body too large and not JSON", "web", strings.Repeat("a", 70<<10), 413, "payload_too_large", "body"},
	}
	h := newHarness(t)
	before := h.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do(t, http.MethodPost, "/api/v1/services/"+tt.service+"/instances", tt.body)
			wantError(t, rec, tt.status, tt.code, tt.field)
		})
	}
	if after := h.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("bad input changed the store: %+v", after)
	}
	if idx := h.view.CatalogIndex(); idx != 0 {
		t.Fatalf("bad input changed the view: catalogue index %d", idx)
	}
}

func TestHeartbeatRenewsTheDeadline(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80,"ttl_seconds":10}`)
	h.clock.Advance(4 * time.Second)

	rec := h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("heartbeat: %d %s", rec.Code, rec.Body)
	}
	var got map[string]any
	decode(t, rec, &got)
	want := map[string]any{"expires_at": "2026-03-04T05:06:21Z", "ttl_seconds": float64(10)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("heartbeat answer %v, want %v", got, want)
	}
	if in, _ := h.view.Instance("web", "a"); !in.ExpiresAt.Equal(epoch.Add(14 * time.Second)) {
		t.Fatalf("view deadline %v", in.ExpiresAt)
	}
	index := h.view.ServiceIndex("web")

	rec = h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"status":"warning"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("heartbeat with status: %d %s", rec.Code, rec.Body)
	}
	if in, _ := h.view.Instance("web", "a"); in.Status != registry.StatusWarning {
		t.Fatalf("status %q after heartbeat", in.Status)
	}
	if h.view.ServiceIndex("web") <= index {
		t.Fatal("a status change did not move the index")
	}

	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"status":"sleepy"}`), 400, "invalid_argument", "status")
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"state":"passing"}`), 400, "invalid_argument", "state")
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"status":`), 400, "invalid_argument", "body")
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", `{"status":"`+strings.Repeat("x", 65<<10)+`"}`), 413, "payload_too_large", "body")
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/nope/heartbeat", ""), 404, "not_found", "")
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/b%20c/heartbeat", ""), 400, "invalid_argument", "id")
	if in, _ := h.view.Instance("web", "a"); in.Status != registry.StatusWarning {
		t.Fatal("a refused heartbeat changed the instance")
	}

	// Past its deadline the instance cannot be renewed: it must register again.
	h.clock.Advance(10 * time.Second)
	wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""), 404, "not_found", "")
}

func TestDeregister(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	rec := h.do(t, http.MethodDelete, "/api/v1/services/web/instances/a", "")
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("deregister: %d %q", rec.Code, rec.Body)
	}
	wantError(t, h.do(t, http.MethodGet, "/api/v1/services/web/instances/a", ""), 404, "not_found", "")
	wantError(t, h.do(t, http.MethodDelete, "/api/v1/services/web/instances/a", ""), 404, "not_found", "")
	wantError(t, h.do(t, http.MethodDelete, "/api/v1/services/web/instances/.a", ""), 400, "invalid_argument", "id")
	if n := len(h.snapshot(t).Services["web"].Instances); n != 0 {
		t.Fatalf("%d instances left in the store", n)
	}
}

func TestWritesAnswerUnavailableWhenTheStoreIsGone(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/services/web/instances", `{"id":"b","address":"10.0.0.1","port":80}`},
		{http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", ""},
		{http.MethodDelete, "/api/v1/services/web/instances/a", ""},
	} {
		rec := h.do(t, req.method, req.path, req.body)
		wantError(t, rec, http.StatusServiceUnavailable, "unavailable", "")
		if rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", req.method, req.path)
		}
	}
	// Reads are still served from memory.
	if rec := h.do(t, http.MethodGet, "/api/v1/services/web/instances/a", ""); rec.Code != http.StatusOK {
		t.Fatalf("read while the store is gone: %d", rec.Code)
	}
}

// state is what a client could see of the registry: the catalogue and
// every live instance of web and db, as the API answers them.
func (h *harness) state(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, target := range []string{"/api/v1/services", "/api/v1/services/web?status=any", "/api/v1/services/db?status=any"} {
		rec := h.do(t, http.MethodGet, target, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		b.WriteString(rec.Body.String())
	}
	return b.String()
}

// Strict input (issue 8): text that is not UTF-8, a malformed IPv4
// address, a metadata key a lookup cannot match and control characters
// are refused with a 400 naming the field, and change nothing.
func TestStrictInputIsRefusedNamingTheFieldAndChangesNothing(t *testing.T) {
	tests := []struct {
		name, body, field string
	}{
		// encoding/json would store U+FFFD in place of these bytes.
		{"invalid UTF-8 in id", "{\"id\":\"a\xff\",\"address\":\"10.0.0.1\",\"port\":80}", "id"},
		{"invalid UTF-8 in address", "{\"address\":\"db\xff.example.com\",\"port\":80}", "address"},
		{"invalid UTF-8 in a tag", "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"ok\",\"v\xc3\"]}", "tags"},
		{"invalid UTF-8 in a metadata value", "{\"address\":\"10.0.0.1\",\"port\":80,\"metadata\":{\"zone\":\"\xe2\x82\"}}", "metadata"},
		{"invalid UTF-8 in a metadata key", "{\"address\":\"10.0.0.1\",\"port\":80,\"metadata\":{\"z\xffne\":\"a\"}}", "metadata"},
		{"invalid UTF-8 in an overlong encoding", "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"\xc0\xaf\"]}", "tags"},
		{"invalid UTF-8 in a surrogate", "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"\xed\xa0\x80\"]}", "tags"},
		{"invalid UTF-8 in two fields", "{\"address\":\"a\xff\",\"port\":80,\"tags\":[\"\xff\"]}", "address"},

		// Malformed IPv4 addresses are not host names.
		{"address 999.1.1.1", `{"address":"999.1.1.1","port":80}`, "address"},
		{"address 1.2.3", `{"address":"1.2.3","port":80}`, "address"},
		{"address 0x7f.0.0.1", `{"address":"0x7f.0.0.1","port":80}`, "address"},
		{"address 1.2.3.4.5", `{"address":"1.2.3.4.5","port":80}`, "address"},
		{"address 01.2.3.4", `{"address":"01.2.3.4","port":80}`, "address"},
		{"address 0177.0.0.1", `{"address":"0177.0.0.1","port":80}`, "address"},
		{"address 2130706433", `{"address":"2130706433","port":80}`, "address"},
		{"address zone with an escape", `{"address":"fe80::1%\u001b[2J","port":80}`, "address"},

		{"metadata key with a colon", `{"address":"10.0.0.1","port":80,"metadata":{"zone:eu":"a"}}`, "metadata"},
		{"metadata key with a space", `{"address":"10.0.0.1","port":80,"metadata":{"my zone":"a"}}`, "metadata"},
		{"metadata key not ASCII", `{"address":"10.0.0.1","port":80,"metadata":{"zöne":"a"}}`, "metadata"},
		{"metadata value with an escape", `{"address":"10.0.0.1","port":80,"metadata":{"zone":"\u001b[31ma"}}`, "metadata.zone"},
		{"metadata value with a newline", `{"address":"10.0.0.1","port":80,"metadata":{"zone":"a\nb"}}`, "metadata.zone"},
		{"metadata value with a C1 control", `{"address":"10.0.0.1","port":80,"metadata":{"zone":"\u009b2J"}}`, "metadata.zone"},
		{"tag with an escape", `{"address":"10.0.0.1","port":80,"tags":["ok","\u001b[2J"]}`, "tags[1]"},
		{"tag with a newline", `{"address":"10.0.0.1","port":80,"tags":["a\nweb  fake  row"]}`, "tags[0]"},
		{"tag with DEL", `{"address":"10.0.0.1","port":80,"tags":["a\u007f"]}`, "tags[0]"},
	}
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80,"tags":["v1"],"metadata":{"zone":"a"}}`)
	before, snap := h.state(t), h.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range []string{"", `"id":"a",`} { // a new instance, and a replacement of a
				body := tt.body
				if id != "" && !strings.Contains(body, `"id"`) {
					body = "{" + id + strings.TrimPrefix(body, "{")
				}
				rec := h.do(t, http.MethodPost, "/api/v1/services/web/instances", body)
				wantError(t, rec, http.StatusBadRequest, "invalid_argument", tt.field)
			}
		})
	}
	if after := h.state(t); after != before {
		t.Fatalf("refused input changed what a lookup shows:\nbefore %s\nafter  %s", before, after)
	}
	if after := h.snapshot(t); !reflect.DeepEqual(snap, after) {
		t.Fatalf("refused input changed the store: %+v", after)
	}
}

func TestStrictInputAcceptsWhatTheRulesAllow(t *testing.T) {
	h := newHarness(t)
	for _, body := range []string{
		`{"address":"1.2.3.example","port":80}`,
		`{"address":"3com.com","port":80}`,
		`{"address":"fe80::1%eth0","port":80}`,
		`{"address":"10.0.0.1","port":80,"tags":["a b","ünï","k=v:w"],"metadata":{"example.com/team_a-1.x":"free text: ünï, {\"a\":1}"}}`,
		"{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"caf\xc3\xa9\"]}", // raw UTF-8
	} {
		h.register(t, "web", body)
	}
	rec := h.do(t, http.MethodGet, "/api/v1/services/web?meta=example.com/team_a-1.x:free%20text:%20%C3%BCn%C3%AF,%20%7B%22a%22:1%7D&tag=caf%C3%A9", "")
	var got lookupAnswer
	decode(t, rec, &got)
	if len(got.Instances) != 0 {
		t.Fatalf("lookup matched %v; the tag and the metadata are on different instances", ids(got.Instances))
	}
	rec = h.do(t, http.MethodGet, "/api/v1/services/web?meta=example.com/team_a-1.x:free%20text:%20%C3%BCn%C3%AF,%20%7B%22a%22:1%7D", "")
	decode(t, rec, &got)
	if len(got.Instances) != 1 {
		t.Fatalf("meta= found %d instances, want the one with that key", len(got.Instances))
	}
}

func TestHeartbeatWithInvalidUTF8IsRefused(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	h.clock.Advance(10 * time.Second) // so that a renewal would show
	before := h.do(t, http.MethodGet, "/api/v1/services/web/instances/a", "").Body.String()
	for _, body := range []string{"{\"status\":\"passing\xff\"}", "{\"status\":\"\xc3\"}"} {
		wantError(t, h.do(t, http.MethodPut, "/api/v1/services/web/instances/a/heartbeat", body), 400, "invalid_argument", "status")
	}
	if after := h.do(t, http.MethodGet, "/api/v1/services/web/instances/a", "").Body.String(); after != before {
		t.Fatalf("a refused heartbeat changed the instance:\nbefore %s\nafter  %s", before, after)
	}
}

// Path values are names, and a name is ASCII: bytes that are not UTF-8
// in the path are refused naming the segment.
func TestInvalidUTF8InThePathIsRefused(t *testing.T) {
	h := newHarness(t)
	h.register(t, "web", `{"id":"a","address":"10.0.0.1","port":80}`)
	before := h.state(t)
	tests := []struct{ method, target, body, field string }{
		{http.MethodPost, "/api/v1/services/w%FFb/instances", `{"address":"10.0.0.1","port":80}`, "service"},
		{http.MethodPut, "/api/v1/services/web/instances/a%C3/heartbeat", "", "id"},
		{http.MethodPut, "/api/v1/services/w%C0%AF/instances/a/heartbeat", "", "service"},
		{http.MethodDelete, "/api/v1/services/web/instances/%FF", "", "id"},
		{http.MethodGet, "/api/v1/services/web/instances/a%FF", "", "id"},
		{http.MethodGet, "/api/v1/services/w%FFb", "", "service"},
		{http.MethodGet, "/api/v1/services/w%FFb/health", "", "service"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			wantError(t, h.do(t, tt.method, tt.target, tt.body), 400, "invalid_argument", tt.field)
		})
	}
	if after := h.state(t); after != before {
		t.Fatalf("refused requests changed what a lookup shows:\nbefore %s\nafter  %s", before, after)
	}
}
