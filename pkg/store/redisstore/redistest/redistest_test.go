package redistest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func TestStandaloneStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("server still running after Stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while the server is stopped")
	}
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
}

func TestTLSRequiresClientCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := StartTLS(t)
	if err := s.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	plain := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("a plain-text PING was answered by the TLS-only server")
	}
	noCert := s.TLS.ClientConfig(t)
	noCert.Certificates = nil
	bare := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, TLSConfig: noCert})
	defer bare.Close()
	if err := bare.Ping(ctx).Err(); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
}

func TestSentinelFailsOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	set := StartSentinel(t)
	addr, err := set.MasterAddr(ctx)
	if err != nil || addr != set.Master.Addr {
		t.Fatalf("MasterAddr = %q, %v; want %s", addr, err, set.Master.Addr)
	}
	if got := set.KillMaster(20 * time.Second); got != set.Replica.Addr {
		t.Fatalf("promoted %s, want the replica %s", got, set.Replica.Addr)
	}
}

func TestClusterServesEverySlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := StartCluster(t)
	addrs := make([]string, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		addrs[i] = n.Addr
	}
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := c.Set(ctx, key, key, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 6 {
		t.Fatalf("DBSIZE over the cluster = %d, %v; want 6", n, err)
	}
}

// A server whose port another test's server took first is not taken for
// started: the one answering there is not ours (a cluster once formed
// with such a stranger and failed).
func TestLaunchRefusesAPortAnotherServerHolds(t *testing.T) {
	other := Start(t)
	_, port, err := net.SplitHostPort(other.Addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{
		Addr: other.Addr, Dir: dir, t: t, program: "redis-server",
		args: []string{"--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--save", "", "--port", port},
	}
	if err := s.launch(); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("launch on a port another server holds: %v; want it refused", err)
	}
}
