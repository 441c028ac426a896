package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/sagaproject/saga/pkg/config"
)

func TestNewLoggerFormat(t *testing.T) {
	tests := []struct {
		format string
		json   bool
	}{
		{config.FormatAuto, true}, // a buffer is no terminal
		{config.FormatJSON, true},
		{config.FormatText, false},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		NewLogger(&buf, tt.format, slog.LevelInfo).Info("hello")
		if got := strings.HasPrefix(buf.String(), "{"); got != tt.json {
			t.Errorf("format %s wrote %q", tt.format, buf.String())
		}
	}
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	logger := NewLogger(&buf, config.FormatJSON, level)
	logger.Debug("hidden")
	level.Set(slog.LevelDebug)
	logger.Debug("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Fatalf("the level var does not steer the logger: %q", buf.String())
	}
}
