package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sagaproject/saga/pkg/config"
)

// reloadable are the keys that a reload applies while serving. The rest
// (where to listen, the store, the TTL rules, the HTTP server's own
// timeouts and connection budget) take effect after a restart.
var reloadable = []string{
	"log.level", "log.audit_file",
	"server.protected_mode", "server.tls.cert_file", "server.tls.key_file", "server.tls.client_ca_file",
	"auth.enabled", "auth.bootstrap_token_file",
	"limits.read_rate", "limits.read_burst", "limits.write_rate", "limits.write_burst",
	"limits.max_blocking_queries", "limits.max_blocking_queries_per_client",
	"limits.max_streams", "limits.max_streams_per_client", "limits.max_instances",
	"limits.body_timeout", "limits.stream_write_timeout",
}

// bootstrapTimeout bounds the store write of a reloaded bootstrap token.
const bootstrapTimeout = 5 * time.Second

// Reload reads the configuration again (SIGHUP) and applies what can change
// while serving: the log level, access (auth, protected mode), the
// limits, TLS (on, off, other files, or the same files re-read) and the
// bootstrap token file; it reopens the audit file, for logrotate. It says
// in one line what it applied and re-read, and in another which changes
// wait for a restart. A configuration that no longer loads is logged and
// ignored: the server keeps running as it was.
func (d *Daemon) Reload() {
	if d.opts.Reload == nil {
		return
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next, err := d.opts.Reload()
	if err != nil {
		d.logger.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	prev := d.current

	var applied, restart, reread []string
	for _, key := range prev.ChangedKeys(next) {
		if slices.Contains(reloadable, key) {
			applied = append(applied, key)
		} else {
			restart = append(restart, key)
		}
	}
	if prev.Log.Level != next.Log.Level && d.opts.Level != nil {
		d.opts.Level.Set(next.Log.Level)
	}
	if d.srv != nil { // serving: the rest applies to the running server
		if failed := d.applyServing(prev, next, &reread); len(failed) > 0 {
			// Keep the running values of what failed, so that the next
			// reload tries it again.
			next = keepRunning(next, prev, failed)
			applied = slices.DeleteFunc(applied, func(k string) bool { return slices.Contains(failed, k) })
		}
	}
	d.current = next

	// Logged at a level that shows under the new setting.
	d.logger.Log(context.Background(), max(slog.LevelInfo, next.Log.Level), "configuration reloaded",
		"applied", nonNil(applied), "reread", nonNil(reread))
	if len(restart) > 0 {
		d.logger.Warn("configuration changed; these settings take effect after a restart", "keys", restart)
	}
}

// applyServing applies next to the running server: access, limits, TLS,
// the audit file and the bootstrap token file. It logs each failure and
// returns the keys it could not apply; re-read files go on reread.
func (d *Daemon) applyServing(prev, next *config.Config, reread *[]string) (failed []string) {
	api := d.srv.API()
	api.SetAuth(authSettings(next))
	api.SetLimits(apiLimits(next.Limits))

	if prev.Server.TLS != next.Server.TLS {
		if err := d.applyTLS(next.Server.TLS); err != nil {
			d.logger.Error("TLS settings not applied; new connections are served as before", "err", err)
			failed = append(failed, "server.tls.cert_file", "server.tls.key_file", "server.tls.client_ca_file")
		}
	} else if d.tls != nil {
		switch changed, err := d.tls.Reload(); {
		case err != nil:
			d.logger.Error("reloading the TLS files failed; new connections get the previous certificate", "err", err)
		case changed:
			*reread = append(*reread, "server.tls files")
		}
	}

	if err := d.reopenAudit(next); err != nil {
		d.logger.Error("audit file not reopened; audit lines go where they went", "err", err)
		failed = append(failed, "log.audit_file")
	} else if next.Log.AuditFile != "" {
		*reread = append(*reread, "log.audit_file")
	}

	ctx, cancel := context.WithTimeout(context.Background(), bootstrapTimeout)
	defer cancel()
	if err := bootstrapFromFile(ctx, d.logger, api.Tokens(), next.Auth.BootstrapTokenFile); err != nil {
		d.logger.Error("bootstrap token file not applied", "err", err) // read again at the next reload
	} else if next.Auth.BootstrapTokenFile != "" {
		*reread = append(*reread, "auth.bootstrap_token_file")
	}
	return failed
}

// reopenAudit opens log.audit_file again (the same file after logrotate
// moved it, or another one), or goes back to the main log.
func (d *Daemon) reopenAudit(next *config.Config) error {
	if d.audit != nil && d.audit.path == next.Log.AuditFile {
		return d.audit.Reopen()
	}
	logger, sink, err := openAudit(next, d.logger)
	if err != nil {
		return err
	}
	d.srv.API().SetAudit(logger)
	_ = d.audit.Close() // lines go to the new one from now on
	d.audit = sink
	return nil
}

// keepRunning returns next with the values of keys taken from running.
func keepRunning(next, running *config.Config, keys []string) *config.Config {
	c := *next
	for _, key := range keys {
		switch {
		case strings.HasPrefix(key, "server.tls."):
			c.Server.TLS = running.Server.TLS
		case key == "log.audit_file":
			c.Log.AuditFile = running.Log.AuditFile
		}
	}
	return &c
}

// nonNil logs an empty list as [] rather than null.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
