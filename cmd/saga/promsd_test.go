package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagaproject/saga/internal/asynctest"
)

// sdTimeout bounds how long Prometheus may take to follow a change: one
// refresh of the discovery (1s here), then its discovery manager hands
// updates to the scrapers at most every 5s, then a scrape (1s).
const sdTimeout = 60 * time.Second

// TestPrometheusDiscoversInstances proves GET /api/v1/sd/prometheus with
// the real Prometheus, running the shipped example contrib/prometheus/
// saga-sd.yml: Saga with auth on, Prometheus with a read token scoped to
// demo*, instances whose address:port are small metrics servers of the
// test. Prometheus's own /api/v1/targets must show them with Saga's labels,
// scrape them, and drop one that is deregistered.
func TestPrometheusDiscoversInstances(t *testing.T) {
	env := sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_AUTH_ENABLED=true")
	p := startSaga(t, env, "serve", "--port", "0")
	_, admin := newToken(t, p, "", "bootstrap")
	_, reader := newToken(t, p, admin, "create", "--role", "read", "--service", "demo*", "--description", "prometheus")

	type instance struct {
		service, id, path string
		tags              []string
		metadata          map[string]string
	}
	instances := []instance{
		{"demo", "demo-1", "/metrics", []string{"metrics", "v1"}, map[string]string{"team.name": "obs"}},
		{"demo", "demo-2", "/metrics", []string{"metrics", "v2"}, map[string]string{"team.name": "obs"}},
		{"demo", "demo-3", "/custom/metrics", []string{"metrics", "v2"}, map[string]string{"team.name": "obs", "metrics_path": "/custom/metrics"}},
		// Without the metrics tag: the example's keep rule drops it.
		{"demo", "demo-batch", "/metrics", []string{"batch"}, nil},
		// Outside the token's scope: Prometheus never hears of it.
		{"other", "other-1", "/metrics", []string{"metrics"}, nil},
	}
	targets := map[string]string{} // id → address:port
	for _, in := range instances {
		host, port := startMetricsServer(t, in.path)
		body := map[string]any{"id": in.id, "address": host, "port": port, "tags": in.tags, "metadata": in.metadata, "ttl_seconds": 600}
		if status, data := authedDo(t, admin, http.MethodPost, p.url("/api/v1/services/"+in.service+"/instances"), body); status != http.StatusCreated {
			t.Fatalf("register %s: %d %s", in.id, status, data)
		}
		targets[in.id] = net.JoinHostPort(host, strconv.Itoa(port))
	}

	prom := startPrometheus(t, prometheusSDConfig(t, p.url("/api/v1/sd/prometheus"), reader))

	// Every target is discovered with the labels Saga gave it, relabelled
	// as the example says, and scraped at the path its metadata names.
	wantUp := func(ids ...string) func() error {
		return func() error {
			active, err := prom.activeTargets()
			if err != nil {
				return err
			}
			var got []string
			for _, tg := range active {
				id := tg.DiscoveredLabels["__meta_saga_instance_id"]
				got = append(got, id)
				i := slices.IndexFunc(instances, func(in instance) bool { return in.id == id })
				if i < 0 {
					return fmt.Errorf("a target that is no instance of the test: %v", tg.DiscoveredLabels)
				}
				in := instances[i]
				want := map[string]string{
					"__address__":                    targets[id],
					"__meta_saga_service":            in.service,
					"__meta_saga_instance_id":        id,
					"__meta_saga_status":             "passing",
					"__meta_saga_tags":               "," + strings.Join(in.tags, ",") + ",",
					"__meta_saga_metadata_team_name": in.metadata["team.name"],
				}
				if path := in.metadata["metrics_path"]; path != "" {
					want["__meta_saga_metadata_metrics_path"] = path
				}
				for name, value := range want {
					if tg.DiscoveredLabels[name] != value {
						return fmt.Errorf("%s: discovered label %s=%q, want %q (all: %v)", id, name, tg.DiscoveredLabels[name], value, tg.DiscoveredLabels)
					}
				}
				if tg.Labels["service"] != in.service || tg.Labels["instance"] != id {
					return fmt.Errorf("%s: labels %v, want service=%s instance=%s", id, tg.Labels, in.service, id)
				}
				if want := "http://" + targets[id] + in.path; tg.ScrapeURL != want {
					return fmt.Errorf("%s: scrape URL %s, want %s", id, tg.ScrapeURL, want)
				}
				if tg.Health != "up" {
					return fmt.Errorf("%s: health %q (%s)", id, tg.Health, tg.LastError)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, ids) {
				return fmt.Errorf("active targets %v, want %v", got, ids)
			}
			return nil
		}
	}
	asynctest.Eventually(t, sdTimeout, "Prometheus scrapes the registered instances", wantUp("demo-1", "demo-2", "demo-3"))

	if status, data := authedDo(t, admin, http.MethodDelete, p.url("/api/v1/services/demo/instances/demo-2"), nil); status != http.StatusNoContent {
		t.Fatalf("deregister demo-2: %d %s", status, data)
	}
	asynctest.Eventually(t, sdTimeout, "Prometheus drops the deregistered instance", wantUp("demo-1", "demo-3"))
}

// startMetricsServer serves a little Prometheus text on path, and returns
// the host and port it listens on.
func startMetricsServer(t *testing.T, path string) (string, int) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "# HELP demo_up A target of the discovery test.\n# TYPE demo_up gauge\ndemo_up 1\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port
}

// prometheusSDConfig is the shipped example pointed at this Saga, with the
// token in a file, refreshing and scraping every second.
func prometheusSDConfig(t *testing.T, sdURL, secret string) string {
	t.Helper()
	example, err := os.ReadFile("../../contrib/prometheus/saga-sd.yml")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "saga-token")
	if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	config := string(example)
	for old, replacement := range map[string]string{
		"http://127.0.0.1:8030/api/v1/sd/prometheus": sdURL,
		"/etc/prometheus/saga-token":                 tokenFile,
		"refresh_interval: 30s":                      "refresh_interval: 1s",
	} {
		if !strings.Contains(config, old) {
			t.Fatalf("contrib/prometheus/saga-sd.yml no longer holds %q; adjust this test", old)
		}
		config = strings.ReplaceAll(config, old, replacement)
	}
	return "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + config
}

// prometheusProcess is a running Prometheus.
type prometheusProcess struct {
	url string
}

// startPrometheus runs the real Prometheus with config on a free loopback
// port and waits until it is ready. It is killed at the end of the test.
func startPrometheus(t *testing.T, config string) *prometheusProcess {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make test-deps installs it): %v", err)
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := asynctest.FreeAddr(t)
	logs := &asynctest.LogBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs)
		}
	})
	prom := &prometheusProcess{url: "http://" + addr}
	asynctest.Eventually(t, startTimeout, "Prometheus ready", func() error {
		select {
		case <-exited:
			t.Fatalf("prometheus exited; output:\n%s", logs)
		default:
		}
		resp, err := http.Get(prom.url + "/-/ready")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %d", resp.StatusCode)
		}
		return nil
	})
	return prom
}

// promTarget is an active target as Prometheus's /api/v1/targets shows it.
type promTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapeURL        string            `json:"scrapeUrl"`
	Health           string            `json:"health"`
	LastError        string            `json:"lastError"`
}

// activeTargets asks Prometheus which targets it has discovered.
func (p *prometheusProcess) activeTargets() ([]promTarget, error) {
	resp, err := http.Get(p.url + "/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, fmt.Errorf("decode /api/v1/targets: %w", err)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("/api/v1/targets: status %q", answer.Status)
	}
	return answer.Data.ActiveTargets, nil
}
