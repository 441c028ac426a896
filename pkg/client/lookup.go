package client

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Status filters of a lookup, besides registry.StatusPassing.
const (
	// StatusAny includes critical instances too.
	StatusAny = "any"
)

// QueryOptions turn a read into a blocking query: with Index or Wait set,
// the server answers as soon as its index differs from Index, or after
// Wait (the server's default when zero) with the same index. Index 0 with
// a Wait waits for a service that is not known yet (its index is 0) to
// appear.
type QueryOptions struct {
	Index uint64
	Wait  time.Duration
}

// LookupOptions filter a lookup and may make it a blocking query.
type LookupOptions struct {
	Tags []string          // every tag must match
	Meta map[string]string // every key must have this value
	// Status is "" for passing and warning instances (the default),
	// "passing" for passing only, or StatusAny for all.
	Status string
	// Fields, when not empty, asks for a lean answer: each instance
	// carries only these keys of its JSON ("id", "address", "port",
	// "tags", …; see the API's fields= parameter), and the others are
	// left at their zero values. A big service's lean answer is a
	// fraction of the full one to send and to decode, and the server
	// keeps it cached while heartbeats come in, when it leaves out
	// expires_at and last_heartbeat. Empty: every key.
	Fields []string
	QueryOptions
}

// ServiceInstances is the answer to a lookup.
type ServiceInstances struct {
	Service   string              `json:"service"`
	Index     uint64              `json:"index"`
	Instances []registry.Instance `json:"instances"`
}

// Lookup returns the live instances of service that match opts. An unknown
// service is not an error: it has no instances. A blocking query asks again
// with the same index while the server restarts (503 with Retry-After, or
// no answer), for up to 30 seconds.
func (c *Client) Lookup(ctx context.Context, service string, opts LookupOptions) (ServiceInstances, error) {
	q := url.Values{}
	for _, tag := range opts.Tags {
		q.Add("tag", tag)
	}
	// Sorted keys keep the query string stable, so server-side caches hit.
	for _, k := range slices.Sorted(maps.Keys(opts.Meta)) {
		q.Add("meta", k+":"+opts.Meta[k])
	}
	if opts.Status != "" {
		q.Set("status", opts.Status)
	}
	if len(opts.Fields) > 0 {
		q.Set("fields", strings.Join(opts.Fields, ","))
	}
	blockingQuery(q, opts.Index, opts.Wait)
	var out ServiceInstances
	r, err := c.get(ctx, servicePath(service), q, opts.Index > 0 || opts.Wait > 0, &out)
	if err != nil {
		return ServiceInstances{}, err
	}
	if out.Index == 0 {
		out.Index = indexOf(r.header)
	}
	if out.Instances == nil {
		out.Instances = []registry.Instance{}
	}
	return out, nil
}

// Catalog is the list of services.
type Catalog struct {
	Index    uint64           `json:"index"`
	Services []ServiceSummary `json:"services"`
}

// ServiceSummary is one service in the catalogue.
type ServiceSummary struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
}

// Services returns the catalogue.
func (c *Client) Services(ctx context.Context, opts QueryOptions) (Catalog, error) {
	q := url.Values{}
	blockingQuery(q, opts.Index, opts.Wait)
	var out Catalog
	r, err := c.get(ctx, "/api/v1/services", q, opts.Index > 0 || opts.Wait > 0, &out)
	if err != nil {
		return Catalog{}, err
	}
	if out.Index == 0 {
		out.Index = indexOf(r.header)
	}
	if out.Services == nil {
		out.Services = []ServiceSummary{}
	}
	return out, nil
}
