//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runPublished starts image on podman's default network with its port 8030
// published on a free loopback port of the host, as `docker run -p` does,
// and returns the address to reach it at. Requests through the published
// port reach Saga from the network's gateway, not from loopback.
func runPublished(t *testing.T, image string, args ...string) (addr string) {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	name := "saga-e2e-" + randomHex(4)
	run := append([]string{"run", "--detach", "--name", name, "--publish", "127.0.0.1:" + port + ":8030"}, args...)
	if out, err := podman(append(run, image)...).CombinedOutput(); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = podman("rm", "--force", "--volumes", name).Run() })
	addr = "http://127.0.0.1:" + port
	Eventually(t, 20*time.Second, "the container answers /livez through the published port", func() bool {
		code, _ := request(t, addr+"/livez", "")
		return code == http.StatusOK
	})
	if out, err := podman("healthcheck", "run", name).CombinedOutput(); err != nil {
		t.Errorf("podman healthcheck run: %v\n%s", err, out)
	}
	return addr
}

// request GETs url, with token as a bearer token unless it is empty, and
// returns the status and body; 0 when the request fails.
func request(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// checkProtectedMode: the image as it comes answers the probes through a
// published port, and everything else with a 403 that names the two ways
// out.
func checkProtectedMode(t *testing.T, image string) {
	addr := runPublished(t, image)
	code, body := request(t, addr+"/api/v1/services", "")
	if code != http.StatusForbidden || !strings.Contains(body, "auth.enabled") || !strings.Contains(body, "server.protected_mode") {
		t.Errorf("GET /api/v1/services from outside the container: %d %s; want 403 naming auth.enabled and server.protected_mode", code, body)
	}
	if code, body := request(t, addr+"/api/v1/health", ""); code != http.StatusOK {
		t.Errorf("GET /api/v1/health from outside the container: %d %s; want 200 (an open route)", code, body)
	}
}

// checkAuthWithBootstrapFile runs the image as the deployment guide does
// with auth on: the first admin token's secret in a file mounted
// read-only, and clients sending it.
func checkAuthWithBootstrapFile(t *testing.T, image string) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	token := "saga_" + base64.RawURLEncoding.EncodeToString(secret)
	file := filepath.Join(t.TempDir(), "saga-bootstrap-token")
	// The container's user (65532) reads the file through the bind mount.
	if err := os.WriteFile(file, []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	const mounted = "/run/secrets/saga-bootstrap-token"
	addr := runPublished(t, image,
		"--volume", file+":"+mounted+":ro",
		"--env", "SAGA_AUTH_ENABLED=true", "--env", "SAGA_AUTH_BOOTSTRAP_TOKEN_FILE="+mounted)

	if code, body := request(t, addr+"/api/v1/services", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/services without a token: %d %s; want 401", code, body)
	}
	if code, body := request(t, addr+"/api/v1/services", token); code != http.StatusOK {
		t.Errorf("GET /api/v1/services with the bootstrap token: %d %s; want 200", code, body)
	}
	if code, body := request(t, addr+"/api/v1/tokens", token); code != http.StatusOK {
		t.Errorf("GET /api/v1/tokens with the bootstrap token: %d %s; want 200 (it is an admin token)", code, body)
	}
}
