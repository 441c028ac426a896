package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/httpapi"
)

// authSettings are the access settings of cfg.
func authSettings(cfg *config.Config) httpapi.AuthSettings {
	return httpapi.AuthSettings{Enabled: cfg.Auth.Enabled, ProtectedMode: cfg.Server.ProtectedMode}
}

// logAccess says in one line at start (and on reload) who Saga answers.
func logAccess(logger *slog.Logger, cfg *config.Config) {
	switch {
	case cfg.Auth.Enabled:
		logger.Info("auth is on: every request but the probes needs a token")
	case !listensBeyondLoopback(cfg.Server.Host):
		// Only this machine can connect; nothing to say.
	case cfg.Server.ProtectedMode:
		logger.Warn("protected mode: auth is off, so only clients on this machine are answered; " +
			"turn auth on (auth.enabled) or set server.protected_mode = false")
	default:
		logger.Warn("auth and protected mode are off: anyone who reaches this port can read and change the registry")
	}
}

// listensBeyondLoopback reports whether host accepts connections from
// other machines (a host name is assumed to).
func listensBeyondLoopback(host string) bool {
	addr, err := netip.ParseAddr(host)
	return err != nil || !addr.IsLoopback()
}

// bootstrapFromFile makes sure the secret in auth.bootstrap_token_file is
// an admin token. A file that cannot be read or holds no secret is an
// error naming the key.
func bootstrapFromFile(ctx context.Context, logger *slog.Logger, tokens *auth.Tokens, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth.bootstrap_token_file: %w", err)
	}
	secret := strings.TrimSpace(string(data))
	if err := auth.CheckSecret(secret); err != nil {
		return fmt.Errorf("auth.bootstrap_token_file: %s does not hold a token: %w", path, err)
	}
	tok, created, err := tokens.EnsureAdmin(ctx, secret, "bootstrap token from "+path)
	if err != nil {
		return fmt.Errorf("auth.bootstrap_token_file: store the token: %w", err)
	}
	if created {
		logger.Info("created the admin token of auth.bootstrap_token_file", "accessor", tok.Accessor)
	}
	return nil
}

// auditSink is where the audit lines go: the main log, or log.audit_file,
// which Reopen opens again (after logrotate moved it).
type auditSink struct {
	path string

	mu   sync.Mutex
	file *os.File
}

// openAudit returns the audit logger for cfg, and the sink behind it (nil
// for the main log).
func openAudit(cfg *config.Config, logger *slog.Logger) (*slog.Logger, *auditSink, error) {
	if cfg.Log.AuditFile == "" {
		return logger, nil, nil
	}
	sink := &auditSink{path: cfg.Log.AuditFile}
	if err := sink.Reopen(); err != nil {
		return nil, nil, err
	}
	return slog.New(slog.NewJSONHandler(sink, nil)), sink, nil
}

func (s *auditSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.file.Write(p)
}

// Reopen opens the file again, appending, and closes the one before.
func (s *auditSink) Reopen() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log.audit_file: %w", err)
	}
	s.mu.Lock()
	old := s.file
	s.file = f
	s.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file.
func (s *auditSink) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.file.Close()
}
