package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sagaproject/saga/pkg/registry"
)

// registerAnswer is the instance as stored, plus how often to heartbeat.
type registerAnswer struct {
	registry.Instance
	HeartbeatIntervalSeconds int `json:"heartbeat_interval_seconds"`
}

// register handles POST /api/v1/services/{service}/instances.
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	service := chi.URLParam(r, "service")
	if err := registry.ValidateName("service", service); err != nil {
		return err
	}
	var reg registry.Registration
	if err := decodeBody(w, r, &reg, false); err != nil {
		return err
	}
	if err := reg.ValidateWith(service, a.checkPolicy); err != nil {
		return err
	}
	in := registry.NewInstance(service, reg, a.clock.Now(), a.defaultTTL)
	if err := a.admitInstance(service, in.ID); err != nil {
		return err
	}
	ev, err := a.store.Register(r.Context(), in)
	if err != nil {
		return fmt.Errorf("register %s/%s: %w", service, in.ID, err)
	}
	a.view.Apply(ev)

	status := http.StatusOK
	if ev.Type == registry.EventRegistered {
		status = http.StatusCreated
	}
	w.Header().Set("Location", r.URL.Path+"/"+ev.Instance.ID)
	writeJSON(w, status, registerAnswer{
		Instance:                 ev.Instance.Clone(),
		HeartbeatIntervalSeconds: heartbeatSeconds(a.heartbeatInterval, ev.Instance.TTL()),
	})
	return nil
}

// heartbeatSeconds advises the configured interval, but never more than
// half the instance's TTL, so that one late heartbeat does not expire it.
func heartbeatSeconds(interval, ttl time.Duration) int {
	return max(1, int(min(interval, ttl/2)/time.Second))
}

// heartbeatRequest is the optional body of a heartbeat.
type heartbeatRequest struct {
	Status registry.Status `json:"status"`
}

// heartbeatAnswer tells the client its new deadline.
type heartbeatAnswer struct {
	ExpiresAt  time.Time `json:"expires_at"`
	TTLSeconds int       `json:"ttl_seconds"`
}

// heartbeat handles PUT /api/v1/services/{service}/instances/{id}/heartbeat.
func (a *API) heartbeat(w http.ResponseWriter, r *http.Request) error {
	service, id, err := instancePath(r)
	if err != nil {
		return err
	}
	var req heartbeatRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	if err := registry.ValidateStatus(req.Status); err != nil {
		return err
	}
	ev, err := a.store.Heartbeat(r.Context(), service, id, req.Status, a.clock.Now())
	if errors.Is(err, registry.ErrNotFound) {
		return instanceNotFound(service, id, "register it again")
	}
	if err != nil {
		return fmt.Errorf("heartbeat %s/%s: %w", service, id, err)
	}
	a.view.Apply(ev)
	writeJSON(w, http.StatusOK, heartbeatAnswer{ExpiresAt: ev.Instance.ExpiresAt.UTC(), TTLSeconds: ev.Instance.TTLSeconds})
	return nil
}

// deregister handles DELETE /api/v1/services/{service}/instances/{id}.
func (a *API) deregister(w http.ResponseWriter, r *http.Request) error {
	service, id, err := instancePath(r)
	if err != nil {
		return err
	}
	ev, err := a.store.Deregister(r.Context(), service, id)
	if errors.Is(err, registry.ErrNotFound) {
		return instanceNotFound(service, id, "")
	}
	if err != nil {
		return fmt.Errorf("deregister %s/%s: %w", service, id, err)
	}
	a.view.Apply(ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// instancePath reads and checks the service and id of an instance route.
func instancePath(r *http.Request) (service, id string, err error) {
	service, id = chi.URLParam(r, "service"), chi.URLParam(r, "id")
	if err := registry.ValidateName("service", service); err != nil {
		return "", "", err
	}
	if err := registry.ValidateName("id", id); err != nil {
		return "", "", err
	}
	return service, id, nil
}

// instanceNotFound is the clean 404 for an instance, whatever the store's
// own error said.
func instanceNotFound(service, id, hint string) error {
	if hint != "" {
		hint = "; " + hint
	}
	return &apiError{http.StatusNotFound, codeNotFound, fmt.Sprintf("instance %q of service %q is unknown or expired%s", id, service, hint)}
}
