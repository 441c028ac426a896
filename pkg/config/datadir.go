package config

import (
	"errors"
	"path/filepath"
	"strings"
)

// DataDir is where the embedded store keeps its files: storage.path when
// set, else $STATE_DIRECTORY (set by systemd's StateDirectory=; the first
// entry when there are several), else $XDG_DATA_HOME/saga, else
// ~/.local/share/saga.
func (c *Config) DataDir(getenv func(string) string) (string, error) {
	if c.Storage.Path != "" {
		return c.Storage.Path, nil
	}
	if dirs := getenv("STATE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		return first, nil
	}
	if xdg := getenv("XDG_DATA_HOME"); xdg != "" {
		return filepath.Join(xdg, "saga"), nil
	}
	if home := homeDir(getenv); home != "" {
		return filepath.Join(home, ".local", "share", "saga"), nil
	}
	return "", errors.New("config: storage.path: no data directory: set storage.path or SAGA_DATA_DIR (no HOME to default to)")
}
