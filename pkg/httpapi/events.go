package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// events handles GET /api/v1/events?service=a&service=b: a Server-Sent
// Events stream of the public changes to the named services (all services
// when none is named). A comment line every KeepAlive keeps proxies from
// closing an idle stream. A client that falls too far behind is
// disconnected; it reconnects and re-reads the services it follows.
func (a *API) events(w http.ResponseWriter, r *http.Request) error {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &registry.FieldError{Field: "query", Message: "malformed query string"}
	}
	services := params["service"]
	for _, name := range services {
		if err := registry.ValidateName("service", name); err != nil {
			return err
		}
	}
	// A token with a service scope sees the events of its services only:
	// naming another is refused, naming none follows those in scope.
	tok, scoped := a.scope(r)
	for _, name := range services {
		if scoped && !tok.InScope(name) {
			return outOfScope(name)
		}
	}

	sub := a.view.Subscribe(services)
	defer sub.Close()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events through unbuffered
	w.WriteHeader(http.StatusOK)

	// From here on the status is sent: failures end the stream, they are
	// not answered. A failed write means the client has gone.
	send := func(chunk string) bool {
		a.extendWriteDeadline(rc) // a client that stops reading is cut off
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(": saga event stream\n\n") {
		return nil
	}
	keepAlive := time.NewTicker(a.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-sub.Done():
			if sub.Dropped() {
				a.logger.Info("event stream dropped: the client fell behind", "remote", r.RemoteAddr)
			}
			return nil
		case ev := <-sub.Events():
			if scoped && !tok.InScope(ev.Service) {
				continue
			}
			data, err := json.Marshal(ev)
			if err != nil {
				a.logger.Error("encode event", "err", err)
				return nil
			}
			if !send("event: " + string(ev.Type) + "\ndata: " + string(data) + "\n\n") {
				return nil
			}
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return nil
			}
		}
	}
}
