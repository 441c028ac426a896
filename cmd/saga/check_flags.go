package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/sagaproject/saga/pkg/registry"
)

// checkFlags are register's flags for one active health check (SPEC §7):
// Saga probes the instance itself, so it needs no heartbeats.
type checkFlags struct {
	http, tcp, interval, timeout string
}

func (c *checkFlags) add(f *pflag.FlagSet) {
	f.StringVar(&c.http, "check-http", "", "HTTP check: a path (/healthz) or :port/path on the instance; 2xx passes, 429 warns")
	f.StringVar(&c.tcp, "check-tcp", "", "TCP check: a :port on the instance that must accept connections")
	f.StringVar(&c.interval, "check-interval", "", "how often the check runs, e.g. 10s (default 10s)")
	f.StringVar(&c.timeout, "check-timeout", "", "how long one probe may take, e.g. 2s (default 5s, at most the interval)")
}

// checks returns the checks the flags ask for. A duration that does not
// parse is refused here, before anything is sent; the server validates
// the rest (targets, ranges), under its own policy.
func (c *checkFlags) checks() ([]registry.Check, error) {
	for _, d := range []struct{ flag, value string }{{"check-interval", c.interval}, {"check-timeout", c.timeout}} {
		if _, err := registry.ParseDuration(d.value); d.value != "" && err != nil {
			return nil, &registry.FieldError{Field: d.flag, Message: fmt.Sprintf("%q: %v", d.value, err)}
		}
	}
	var out []registry.Check
	if c.http != "" {
		out = append(out, registry.Check{HTTP: c.http, Interval: c.interval, Timeout: c.timeout})
	}
	if c.tcp != "" {
		out = append(out, registry.Check{TCP: c.tcp, Interval: c.interval, Timeout: c.timeout})
	}
	if out == nil && (c.interval != "" || c.timeout != "") {
		return nil, &registry.FieldError{Field: "check-interval", Message: "--check-interval and --check-timeout need --check-http or --check-tcp"}
	}
	return out, nil
}
