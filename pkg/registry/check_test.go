package registry

import (
	"errors"
	"testing"
	"time"
)

func TestValidateChecks(t *testing.T) {
	tests := []struct {
		name   string
		checks []Check
		ttl    int
		allow  bool
		field  string // "" when valid
	}{
		{"path", []Check{{HTTP: "/healthz", Interval: "10s", Timeout: "2s"}}, 0, false, ""},
		{"port and path", []Check{{HTTP: ":9090/metrics"}}, 0, false, ""},
		{"tcp port", []Check{{TCP: ":5432", Interval: "5s"}}, 0, false, ""},
		{"own address in a URL", []Check{{HTTP: "https://10.0.0.7:8443/health", TLSSkipVerify: true}}, 0, false, ""},
		{"other host refused", []Check{{HTTP: "http://example.com/"}}, 0, false, "checks[0].http"},
		{"other host allowed", []Check{{HTTP: "http://example.com/"}}, 0, true, ""},
		{"other tcp host refused", []Check{{TCP: "db.internal:5432"}}, 0, false, "checks[0].tcp"},
		{"metadata IP", []Check{{HTTP: "http://169.254.169.254/latest/meta-data/"}}, 0, true, "checks[0].http"},
		{"link-local v6", []Check{{TCP: "[fe80::1]:22"}}, 0, true, "checks[0].tcp"},
		{"aws v6 metadata", []Check{{HTTP: "http://[fd00:ec2::254]/"}}, 0, true, "checks[0].http"},
		{"gcp metadata name", []Check{{HTTP: "http://metadata.google.internal/computeMetadata/v1/"}}, 0, true, "checks[0].http"},
		{"second check", []Check{{TCP: ":1"}, {TCP: ":0"}}, 0, false, "checks[1].tcp"},
		{"neither", []Check{{Interval: "10s"}}, 0, false, "checks[0]"},
		{"both", []Check{{HTTP: "/", TCP: ":1"}}, 0, false, "checks[0]"},
		{"bad interval", []Check{{HTTP: "/", Interval: "soon"}}, 0, false, "checks[0].interval"},
		{"short interval", []Check{{HTTP: "/", Interval: "100ms"}}, 0, false, "checks[0].interval"},
		{"timeout above interval", []Check{{HTTP: "/", Interval: "5s", Timeout: "6s"}}, 0, false, "checks[0].timeout"},
		{"threshold", []Check{{HTTP: "/", FailuresBeforeCritical: -1}}, 0, false, "checks[0].failures_before_critical"},
		{"successes", []Check{{HTTP: "/", SuccessesBeforePassing: 101}}, 0, false, "checks[0].successes_before_passing"},
		{"dca", []Check{{HTTP: "/", DeregisterCriticalAfter: "0s"}}, 0, false, "checks[0].deregister_critical_after"},
		{"method", []Check{{HTTP: "/", Method: "get me"}}, 0, false, "checks[0].method"},
		{"header", []Check{{HTTP: "/", Headers: map[string]string{"X-A": "b\r\nEvil: 1"}}}, 0, false, "checks[0].headers.X-A"},
		{"tcp with method", []Check{{TCP: ":1", Method: "GET"}}, 0, false, "checks[0]"},
		{"result sent", []Check{{HTTP: "/", Status: StatusPassing}}, 0, false, "checks[0]"},
		{"ftp", []Check{{HTTP: "ftp://10.0.0.7/"}}, 0, false, "checks[0].http"},
		{"too many", make([]Check, MaxChecks+1), 0, false, "checks"},
		{"short ttl", []Check{{HTTP: "/"}}, 5, false, "ttl_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Registration{Address: "10.0.0.7", Port: 8080, TTLSeconds: tt.ttl, Checks: tt.checks}
			err := r.ValidateWith("web", CheckPolicy{AllowOtherTargets: tt.allow})
			var fe *FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.field == "":
			case !errors.As(err, &fe) || fe.Field != tt.field:
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

func TestCheckTargetResolves(t *testing.T) {
	tests := []struct {
		check   Check
		address string
		want    string
	}{
		{Check{HTTP: "/healthz"}, "10.0.0.7", "http://10.0.0.7:8080/healthz"},
		{Check{HTTP: ":9090/metrics"}, "db-1.example.com", "http://db-1.example.com:9090/metrics"},
		{Check{HTTP: "/h"}, "2001:db8::1", "http://[2001:db8::1]:8080/h"},
		{Check{TCP: ":5432"}, "2001:db8::1", "[2001:db8::1]:5432"},
		{Check{TCP: ":5432"}, "10.0.0.7", "10.0.0.7:5432"},
	}
	for _, tt := range tests {
		got, err := CheckTarget(tt.check, tt.address, 8080, CheckPolicy{})
		if err != nil || got != tt.want {
			t.Errorf("%+v at %s: %q, %v; want %q", tt.check, tt.address, got, err, tt.want)
		}
	}
}

func TestNewInstanceWithChecks(t *testing.T) {
	in := NewInstance("web", Registration{Address: "10.0.0.7", Port: 80, Checks: []Check{{TCP: ":80", Interval: "2s"}}}, time.Now(), 5*time.Second)
	c := in.Checks[0]
	if in.Status != StatusCritical || in.TTLSeconds != MinCheckedTTLSeconds {
		t.Errorf("status %s ttl %d, want critical and %d", in.Status, in.TTLSeconds, MinCheckedTTLSeconds)
	}
	if c.Interval != "2s" || c.Timeout != "2s" || c.FailuresBeforeCritical != 3 || c.SuccessesBeforePassing != 1 || c.DeregisterCriticalAfter != "10m0s" {
		t.Errorf("defaults: %+v", c)
	}
}
