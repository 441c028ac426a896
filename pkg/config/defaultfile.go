package config

import (
	_ "embed" // for DefaultFile
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultFile is the commented configuration file that `saga config init`
// writes and the packages install as /etc/saga/config.toml. Every setting
// in it is commented out at its default value.
//
//go:embed config.example.toml
var DefaultFile string

// WriteDefaultFile writes the commented default file (DefaultFile) to
// path, creating its directory. It refuses to replace an existing file
// unless force is set.
func WriteDefaultFile(path string, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists (use --force to replace it)", path)
	}
	if err != nil {
		return fmt.Errorf("write config file: %w", err)
	}
	if _, err := f.WriteString(DefaultFile); err != nil {
		f.Close()
		return fmt.Errorf("write config file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write config file: %w", err)
	}
	return nil
}
