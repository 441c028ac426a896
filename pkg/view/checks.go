package view

import (
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// Check results (status, output, last_checked) are observations of the
// Saga that runs the checks, not part of the registration: the store never
// holds them, and the events and snapshots it sends carry definitions
// only. The view keeps the results on its copy of the instance and carries
// them over when the store's copy of the same registration replaces it.

// SetCheckResults records the latest results of an instance's checks,
// given as its whole Checks list, if the view holds that registration
// (registeredAt) with the same definitions. Cached answers that show
// checks are renewed when a status or an output changed; last_checked
// alone may lag in them until something else renews them (in the full
// form, the next heartbeat), never in Instance.
func (v *View) SetCheckResults(service, id string, registeredAt time.Time, checks []registry.Check) {
	v.mu.Lock()
	defer v.mu.Unlock()
	svc := v.services[service]
	if svc == nil {
		return
	}
	cur, ok := svc.instances.get(id)
	if !ok || !cur.RegisteredAt.Equal(registeredAt) || !registry.SameCheckDefinitions(cur.Checks, checks) {
		return
	}
	next := *cur
	next.Checks = make([]registry.Check, len(checks))
	moved := false
	for i, c := range checks {
		next.Checks[i] = cur.Checks[i]
		next.Checks[i].Status, next.Checks[i].Output, next.Checks[i].LastChecked = c.Status, c.Output, c.LastChecked
		if c.Status != cur.Checks[i].Status || c.Output != cur.Checks[i].Output {
			moved = true
		}
	}
	svc.instances.set(&next)
	if moved {
		svc.checked++ // stales the cached answers that show checks
	}
}

// withResultsOf returns next carrying the check results of prev, when
// both are the same registration with the same checks.
func withResultsOf(next, prev *registry.Instance) *registry.Instance {
	if prev == nil || len(prev.Checks) == 0 || !prev.RegisteredAt.Equal(next.RegisteredAt) ||
		!registry.SameCheckDefinitions(prev.Checks, next.Checks) {
		return next
	}
	out := *next
	out.Checks = make([]registry.Check, len(next.Checks))
	for i, c := range next.Checks {
		p := prev.Checks[i]
		c.Status, c.Output, c.LastChecked = p.Status, p.Output, p.LastChecked
		out.Checks[i] = c
	}
	return &out
}

// keepCheckResults carries the results that old holds over to the same
// registrations in svc, which came from a snapshot.
func (svc *service) keepCheckResults(old *instanceSet) {
	for id, in := range svc.instances.all() {
		if len(in.Checks) == 0 {
			continue
		}
		if prev, ok := old.get(id); ok {
			svc.instances.set(withResultsOf(in, prev))
		}
	}
}

// Checked returns a copy of every instance that has checks, live or not,
// and the view's version: callers that remember it may skip the copy
// while CheckedVersion returns the same.
func (v *View) Checked() ([]registry.Instance, uint64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []registry.Instance
	for _, svc := range v.services {
		for _, in := range svc.instances.all() {
			if len(in.Checks) > 0 {
				out = append(out, in.Clone())
			}
		}
	}
	return out, v.version
}

// CheckedVersion is the view's version: it grows with every change that
// may add or remove an instance with checks, or change one.
func (v *View) CheckedVersion() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.version
}
