package daemon

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/sagaproject/saga/internal/asynctest"
	"github.com/sagaproject/saga/pkg/config"
)

func TestReloadAppliesTheLogLevelAndReportsTheRest(t *testing.T) {
	start := config.Default()
	next := start
	next.Log.Level = slog.LevelDebug
	next.Server.Port = 9999
	var loadErr error
	logs := &asynctest.LogBuffer{}
	level := new(slog.LevelVar)
	d := New(Options{
		Config: &start,
		Reload: func() (*config.Config, error) {
			if loadErr != nil {
				return nil, loadErr
			}
			c := next
			return &c, nil
		},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level})),
		Level:  level,
	})

	d.Reload()
	if level.Level() != slog.LevelDebug {
		t.Fatalf("level after reload %s, want debug", level.Level())
	}
	rec, ok := logs.Record("configuration reloaded")
	if applied, _ := rec["applied"].([]any); !ok || len(applied) != 1 || applied[0] != "log.level" {
		t.Fatalf("the reload logged %v, want applied [log.level]", rec)
	}
	rec, ok = logs.Record("configuration changed; these settings take effect after a restart")
	if keys, _ := rec["keys"].([]any); !ok || len(keys) != 1 || keys[0] != "server.port" {
		t.Fatalf("restart-only changes logged as %v", rec)
	}

	loadErr = errors.New(`config: log.level: "loud" must be debug, info, warn or error (from file x)`)
	d.Reload()
	if level.Level() != slog.LevelDebug {
		t.Fatal("a failed reload changed the level")
	}
	if _, ok := logs.Record("reload failed; keeping the running configuration"); !ok {
		t.Fatal("a failed reload was not logged")
	}

	loadErr = nil
	d.Reload()
	rec, ok = lastRecord(logs, "configuration reloaded")
	if applied, _ := rec["applied"].([]any); !ok || len(applied) != 0 {
		t.Fatalf("a reload that changed nothing logged %v", rec)
	}
}

// lastRecord is the last JSON line in logs whose msg is msg.
func lastRecord(logs *asynctest.LogBuffer, msg string) (map[string]any, bool) {
	var last map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			last = rec
		}
	}
	return last, last != nil
}
