package httpapi

import (
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sagaproject/saga/pkg/registry"
)

// The labels of a Prometheus target (SPEC §8), named after Consul SD's.
const (
	promLabelService  = "__meta_saga_service"
	promLabelID       = "__meta_saga_instance_id"
	promLabelStatus   = "__meta_saga_status"
	promLabelTags     = "__meta_saga_tags"
	promLabelMetadata = "__meta_saga_metadata_"
)

// promTargetGroup is one target group of Prometheus's HTTP SD format.
type promTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// prometheusSD handles GET /api/v1/sd/prometheus: the live instances of
// the named services (every service the caller may see when none is
// named), filtered as a lookup, as Prometheus's HTTP SD targets: one group
// per instance, so that each carries its own labels.
func (a *API) prometheusSD(w http.ResponseWriter, r *http.Request) error {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &registry.FieldError{Field: "query", Message: "malformed query string"}
	}
	q, err := parseFilters(params)
	if err != nil {
		return err
	}
	services, err := a.sdServices(r, params["service"])
	if err != nil {
		return err
	}
	groups := []promTargetGroup{}
	var index uint64 // the sum of the answered services' indexes: it moves with any change to them
	for _, name := range services {
		instances, i := a.view.Lookup(name, q)
		index += i
		for _, in := range instances {
			groups = append(groups, promTargetGroupOf(in))
		}
	}
	a.setIndex(w, index)
	writeJSON(w, http.StatusOK, groups)
	return nil
}

// sdServices returns the services a discovery request answers: those it
// names, once each, or else every service in the catalogue that the
// caller's scope includes. Naming a service outside the scope is refused,
// as the event stream refuses it, rather than quietly left out.
func (a *API) sdServices(r *http.Request, named []string) ([]string, error) {
	tok, scoped := a.scope(r)
	if len(named) > 0 {
		for _, name := range named {
			if err := registry.ValidateName("service", name); err != nil {
				return nil, err
			}
			if scoped && !tok.InScope(name) {
				return nil, outOfScope(name)
			}
		}
		return slices.Compact(slices.Sorted(slices.Values(named))), nil
	}
	entries, _ := a.view.Catalog()
	var services []string
	for _, e := range entries {
		if !scoped || tok.InScope(e.Name) {
			services = append(services, e.Name)
		}
	}
	return services, nil
}

// promTargetGroupOf turns an instance into its target group.
func promTargetGroupOf(in registry.Instance) promTargetGroup {
	labels := map[string]string{
		promLabelService: in.Service,
		promLabelID:      in.ID,
		promLabelStatus:  string(in.Status),
		// Surrounded by commas, as Consul SD does (",," for no tags), so
		// that a relabelling regex such as .*,v2,.* needs no special case
		// for the first or the last tag.
		promLabelTags: "," + strings.Join(in.Tags, ",") + ",",
	}
	// Two keys may sanitise to one label name (a.b and a-b): the key that
	// is that name already wins, else the first in sorted order, so the
	// answer does not depend on map order.
	for _, key := range slices.Sorted(maps.Keys(in.Metadata)) {
		name := sanitizeLabelName(key)
		if _, taken := labels[promLabelMetadata+name]; taken && name != key {
			continue
		}
		labels[promLabelMetadata+name] = in.Metadata[key]
	}
	return promTargetGroup{
		// JoinHostPort puts an IPv6 address in brackets.
		Targets: []string{net.JoinHostPort(in.Address, strconv.Itoa(in.Port))},
		Labels:  labels,
	}
}

// sanitizeLabelName makes a metadata key part of a label name as
// Prometheus's strutil.SanitizeLabelName does: every character outside
// [a-zA-Z0-9_] becomes one underscore. A leading digit is fine after the
// label's prefix.
func sanitizeLabelName(key string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, key)
}
