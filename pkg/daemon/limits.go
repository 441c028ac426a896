package daemon

import (
	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/httpapi"
)

// apiLimits are the limits.* keys that the API applies itself; the
// connection budget and the header and idle timeouts belong to the HTTP
// server (server.Options).
func apiLimits(l config.LimitsConfig) httpapi.Limits {
	return httpapi.Limits{
		ReadRate: l.ReadRate, ReadBurst: l.ReadBurst,
		WriteRate: l.WriteRate, WriteBurst: l.WriteBurst,
		MaxBlockingQueries: l.MaxBlockingQueries, MaxBlockingQueriesPerClient: l.MaxBlockingQueriesPerClient,
		MaxStreams: l.MaxStreams, MaxStreamsPerClient: l.MaxStreamsPerClient,
		MaxInstances:       l.MaxInstances,
		BodyTimeout:        l.BodyTimeout,
		StreamWriteTimeout: l.StreamWriteTimeout,
	}
}
