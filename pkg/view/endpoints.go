package view

import (
	"slices"
	"strings"
)

// Endpoint is where one instance listens: all that a DNS answer needs.
type Endpoint struct {
	ID      string
	Address string
	Port    int
}

// Passing returns where the live, passing instances of a service listen,
// those that carry tag (every one when tag is empty), in no order. known
// says whether the service has any live instance at all, whatever its
// status and tags: what tells "no such name" from "nothing to answer".
//
// DNS names are case-insensitive, so a service that no name matches
// exactly is found by one that differs only in case (the first in sort
// order, should several).
func (v *View) Passing(service, tag string) (eps []Endpoint, known bool) {
	now := v.liveNow()
	v.mu.RLock()
	svc := v.services[service]
	if svc == nil {
		svc = v.foldLocked(service)
	}
	if svc == nil {
		v.mu.RUnlock()
		return nil, false
	}
	// Filter after letting go of the lock: the instances are never
	// modified in place, only the list is (see collect).
	list := svc.instances.pointers()
	v.mu.RUnlock()
	for _, in := range list {
		if !in.Live(now) {
			continue
		}
		known = true
		if StatusPassing.keeps(in.Status) && (tag == "" || slices.Contains(in.Tags, tag)) {
			eps = append(eps, Endpoint{ID: in.ID, Address: in.Address, Port: in.Port})
		}
	}
	return eps, known
}

// foldLocked finds the service whose name equals name but for case.
// Callers hold the view's lock.
func (v *View) foldLocked(name string) *service {
	var found string
	for other := range v.services {
		if strings.EqualFold(other, name) && (found == "" || other < found) {
			found = other
		}
	}
	if found == "" {
		return nil
	}
	return v.services[found]
}
