package daemon

import (
	"context"
	"log/slog"
	"strings"
)

// Reload reads the configuration again (SIGHUP) and applies what can change
// while serving: the log level, and the contents of the TLS files. It logs
// what changed, and which changes wait for a restart. A configuration that
// no longer loads is logged and ignored: the server keeps running as it was.
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
	d.current = next

	var restart []string
	for _, key := range prev.ChangedKeys(next) {
		if key != "log.level" {
			restart = append(restart, key)
		}
	}
	tlsChanged, tlsErr := d.reloadTLS()
	if prev.Log.Level != next.Log.Level && d.opts.Level != nil {
		d.opts.Level.Set(next.Log.Level)
		// Logged at a level that shows under the new setting.
		d.logger.Log(context.Background(), max(slog.LevelInfo, next.Log.Level), "log level changed",
			"from", levelName(prev.Log.Level), "to", levelName(next.Log.Level))
	}
	if len(restart) > 0 {
		d.logger.Warn("configuration changed; these settings take effect after a restart", "keys", restart)
	}
	if tlsErr != nil {
		d.logger.Error("reloading the TLS files failed; new connections get the previous certificate", "err", tlsErr)
	}
	if tlsChanged {
		d.logger.Info("reloaded the TLS files", d.tls.LogAttrs()...)
	}
	if prev.Log.Level == next.Log.Level && len(restart) == 0 && !tlsChanged && tlsErr == nil {
		d.logger.Info("configuration reloaded; nothing changed")
	}
}

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

// reloadTLS reads the TLS files again (the running configuration's: new
// paths wait for a restart) and reports whether they changed. The caller
// holds reloadMu.
func (d *Daemon) reloadTLS() (changed bool, err error) {
	if d.tls == nil {
		return false, nil
	}
	return d.tls.Reload()
}
