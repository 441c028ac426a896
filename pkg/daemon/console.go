package daemon

import (
	"net/http"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/ui"
)

// newConsole builds the web console when ui.enabled is on; nil leaves the
// server without /ui/ routes.
func newConsole(cfg *config.Config) (http.Handler, error) {
	if !cfg.UI.Enabled {
		return nil, nil
	}
	h, err := ui.New()
	if err != nil {
		return nil, err
	}
	return h, nil
}
