package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/internal/asynctest"
)

// MasterName is the name the sentinels monitor the master under.
const MasterName = "saga-master"

// SentinelSet is a master, one replica and three sentinels that watch them,
// tuned to fail over about two seconds after the master dies.
type SentinelSet struct {
	Master    *Server
	Replica   *Server
	Sentinels []*Server
	t         testing.TB
}

// StartSentinel starts the master, the replica and the sentinels and waits
// until the replica is in sync and every sentinel knows the other two (a
// failover needs a majority that has met).
func StartSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	master := Start(t)
	replica := startServer(t, "redis-replica", nil, func(port int) []string {
		host, masterPort, _ := net.SplitHostPort(master.Addr)
		return []string{"--port", strconv.Itoa(port), "--replicaof", host, masterPort}
	})
	set := &SentinelSet{Master: master, Replica: replica, t: t}
	for i := range 3 {
		set.Sentinels = append(set.Sentinels, startProgram(t, "redis-sentinel", fmt.Sprintf("sentinel-%d", i), nil, true,
			func(port int, dir string) []string {
				host, masterPort, _ := net.SplitHostPort(master.Addr)
				conf := strings.Join([]string{
					"port " + strconv.Itoa(port),
					"bind 127.0.0.1",
					"daemonize no",
					"dir " + dir,
					"logfile " + filepath.Join(dir, "redis.log"),
					fmt.Sprintf("sentinel monitor %s %s %s 2", MasterName, host, masterPort),
					fmt.Sprintf("sentinel down-after-milliseconds %s 1000", MasterName),
					fmt.Sprintf("sentinel failover-timeout %s 5000", MasterName),
					fmt.Sprintf("sentinel parallel-syncs %s 1", MasterName),
				}, "\n") + "\n"
				path := filepath.Join(dir, "sentinel.conf")
				if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{path}
			}))
	}
	ctx := context.Background()
	replicaClient := replica.Client()
	sentinelClients := make([]*goredis.Client, len(set.Sentinels))
	for i, s := range set.Sentinels {
		sentinelClients[i] = s.Client()
	}
	err := asynctest.Poll(30*time.Second, func() error {
		status, err := infoField(ctx, replicaClient, "replication", "master_link_status")
		if err != nil {
			return err
		}
		if status != "up" {
			return fmt.Errorf("replica link is %s", status)
		}
		for i, c := range sentinelClients {
			info, err := infoField(ctx, c, "sentinel", "master0")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "slaves=1,sentinels=3") {
				return fmt.Errorf("sentinel %s does not know everyone yet: %s", set.Sentinels[i].Addr, info)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sentinel set not ready: %v", err)
	}
	return set
}

// URL is the set in Saga's URL form: redis-sentinel://h1,h2,h3/mastername.
func (s *SentinelSet) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sentinel := range s.Sentinels {
		addrs[i] = sentinel.Addr
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + MasterName
}

// MasterAddr asks the first sentinel that answers where the master is.
func (s *SentinelSet) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, sentinel := range s.Sentinels {
		c := goredis.NewSentinelClient(&goredis.Options{Addr: sentinel.Addr, MaxRetries: -1})
		addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		_ = c.Close()
		if err == nil {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		lastErr = err
	}
	return "", lastErr
}

// KillMaster kills the master process and waits until the sentinels have
// promoted the replica; it returns the new master's address.
func (s *SentinelSet) KillMaster(timeout time.Duration) string {
	s.t.Helper()
	old := s.Master.Addr
	s.Master.Kill()
	var promoted string
	err := asynctest.Poll(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addr, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("sentinels still name %s the master", old)
		}
		promoted = addr
		return nil
	})
	if err != nil {
		s.t.Fatalf("no failover within %s: %v", timeout, err)
	}
	return promoted
}
