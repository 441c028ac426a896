package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// RouteClientLogs sends go-redis's own log lines (one per failed dial,
// among others) to logger at debug level instead of standard error, so an
// outage shows up as the store's one line per back-off step. go-redis keeps
// its logger in a global, so this is for main (the daemon) to call once,
// not something Open does behind its caller's back.
func RouteClientLogs(logger *slog.Logger) {
	goredis.SetLogger(clientLogger{logger.With("component", "go-redis")})
}

type clientLogger struct{ logger *slog.Logger }

func (l clientLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...))
}
