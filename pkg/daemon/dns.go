package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/dnsserver"
	"github.com/sagaproject/saga/pkg/server"
)

// listenDNS binds the DNS server (SPEC §8) when dns.port is set, answering
// from srv's view; nil when it is not.
func listenDNS(cfg *config.Config, srv *server.Server, logger *slog.Logger) (*dnsserver.Server, error) {
	if cfg.DNS.Port == 0 {
		return nil, nil
	}
	dns, err := dnsserver.Listen(dnsserver.Options{
		Addr:       cfg.DNSAddr(),
		Domain:     cfg.DNS.Domain,
		TTL:        uint32(cfg.DNS.TTL / time.Second),
		View:       srv.View(),
		Logger:     logger,
		Registerer: srv.Registerer(),
		Allow:      srv.API().Answers, // protected mode, as on the API port
	})
	if err != nil {
		return nil, fmt.Errorf("dns.port: listen on %s: %w", cfg.DNSAddr(), err)
	}
	return dns, nil
}

// shutdownDNS stops the DNS server, if any. It goes first when Saga stops,
// as it reports not ready: an answer takes microseconds, so there is
// nothing to drain, and no answer then comes from a view that the store
// has stopped feeding.
func shutdownDNS(ctx context.Context, dns *dnsserver.Server) error {
	if dns == nil {
		return nil
	}
	if err := dns.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop dns server: %w", err)
	}
	return nil
}
