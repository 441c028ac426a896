package daemon

import (
	"errors"
	"log/slog"
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
	rec, ok := logs.Record("log level changed")
	if !ok || rec["from"] != "info" || rec["to"] != "debug" {
		t.Fatalf("log level change logged as %v", rec)
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
	if _, ok := logs.Record("configuration reloaded; nothing changed"); !ok {
		t.Fatal("a reload that changed nothing was not logged")
	}
}
