//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signingKey is a throwaway GnuPG home holding one signing key.
type signingKey struct{ home, fingerprint string }

func newSigningKey(t *testing.T, name string) signingKey {
	t.Helper()
	home := t.TempDir()
	t.Cleanup(func() { _ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run() })
	gpg := func(args ...string) string {
		return run(t, "gpg", append([]string{"--homedir", home, "--batch", "--quiet"}, args...)...)
	}
	gpg("--passphrase", "", "--quick-gen-key", name+" <release@example.org>", "ed25519", "sign", "never")
	for _, line := range strings.Split(gpg("--list-secret-keys", "--with-colons"), "\n") {
		if fields := strings.Split(line, ":"); fields[0] == "fpr" {
			return signingKey{home: home, fingerprint: fields[9]}
		}
	}
	t.Fatal("no fingerprint for the new key")
	return signingKey{}
}

// makeRepo runs `make repo` for version into dist, as a release would.
func makeRepo(t *testing.T, version string, key signingKey, dist string) {
	t.Helper()
	cmd := exec.Command("make", "-C", repoRoot, "repo", "VERSION="+version, "SIGNING_KEY="+key.fingerprint,
		"REPO_DIR="+dist, "REPO_ARCHS=amd64", "PACKAGE_DIR="+t.TempDir(), "REPO_URL=file:///srv/saga")
	cmd.Env = append(os.Environ(), "GNUPGHOME="+key.home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make repo VERSION=%s: %v\n%s", version, err, tail(out, 3000))
	}
}

// loadReport is what testdata/saga-load prints.
type loadReport struct {
	Lookups       int64               `json:"lookups"`
	LookupsFailed int64               `json:"lookups_failed"`
	LookupsCut    int64               `json:"lookups_cut"`
	Failures      []string            `json:"failures"`
	Blocking      int64               `json:"blocking"`
	Drained       int64               `json:"drained"`
	BlockingFail  int64               `json:"blocking_failed"`
	Seen          map[string][]string `json:"seen"`
}

// TestRepository publishes the packages into signed repositories with
// `make repo`, installs saga by name from the APT one in the booted Debian,
// and upgrades it from there, while clients send lookups and hold blocking
// queries through a restart and the upgrade: none may fail.
func TestRepository(t *testing.T) {
	key := newSigningKey(t, "Saga release")
	dist := t.TempDir()
	start := time.Now()
	makeRepo(t, oldVersion, key, dist)
	t.Logf("make repo VERSION=%s: %s", oldVersion, time.Since(start).Round(time.Second))

	t.Run("rpm repository signed", func(t *testing.T) {
		repodata := filepath.Join(dist, "rpm", "repodata")
		run(t, "gpg", "--homedir", key.home, "--batch", "--verify", filepath.Join(repodata, "repomd.xml.asc"), filepath.Join(repodata, "repomd.xml"))
		db := t.TempDir()
		run(t, "rpm", "--dbpath", db, "--import", filepath.Join(dist, "rpm", "RPM-GPG-KEY-saga"))
		rpms, _ := filepath.Glob(filepath.Join(dist, "rpm", "saga-"+oldVersion+"-1.*.rpm"))
		if len(rpms) != 1 {
			t.Fatalf("rpm repository holds %v", rpms)
		}
		if out := run(t, "rpm", "--dbpath", db, "--checksig", rpms[0]); !strings.Contains(out, "signatures OK") {
			t.Errorf("rpm --checksig: %s", out)
		}
		repo, err := os.ReadFile(filepath.Join(dist, "rpm", "saga.repo"))
		if err != nil || !strings.Contains(string(repo), "repo_gpgcheck=1") || !strings.Contains(string(repo), "baseurl=file:///srv/saga/rpm") {
			t.Errorf("saga.repo: %v\n%s", err, repo)
		}
	})

	m := bootDebian(t)
	apt := func(args ...string) string {
		t.Helper()
		return m.Run(t, append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"}, args...)...)
	}
	publish := func(dist, name string) {
		t.Helper()
		dst := filepath.Join(m.Root, "srv", name)
		run(t, "rm", "-rf", dst)
		run(t, "mkdir", "-p", dst)
		run(t, "cp", "-a", filepath.Join(dist, "apt"), dst)
	}

	// What docs/install.md tells an operator to run, with a file: URI.
	publish(dist, "saga")
	m.Run(t, "install", "-d", "-m", "0755", "/etc/apt/keyrings")
	m.CopyIn(t, filepath.Join(dist, "apt", "saga-archive-keyring.gpg"), "/etc/apt/keyrings/saga-archive-keyring.gpg")
	m.WriteFile(t, "/etc/apt/sources.list.d/saga.list",
		[]byte("deb [signed-by=/etc/apt/keyrings/saga-archive-keyring.gpg] file:/srv/saga/apt stable main\n"), 0o644)
	// Debian has a package named saga too (SAGA GIS): the pin prefers ours.
	m.WriteFile(t, "/etc/apt/preferences.d/saga", []byte("Package: saga\nPin: release o=Saga\nPin-Priority: 990\n"), 0o644)
	apt("update")
	apt("install", "saga")
	deadline := time.Now().Add(restartWithin)
	for h, ok := healthOn(m, 8030); !ok || h.Version != oldVersion; h, ok = healthOn(m, 8030) {
		if time.Now().After(deadline) {
			out, _, _ := m.Exec("journalctl", "-u", "saga", "--no-pager", "-n", "40")
			t.Fatalf("saga installed by name does not answer health (%+v):\n%s", h, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The operator's edit: no per-client read limit, since the load below
	// comes from one address and would otherwise be answered 429.
	m.Run(t, "sed", "-i", "s/^# read_rate = 500$/read_rate = 0/", "/etc/saga/config.toml")
	m.Run(t, "systemctl", "reload", "saga")

	// The load: lookups as fast as they go, and blocking queries.
	loadBin := filepath.Join(t.TempDir(), "saga-load")
	build := exec.Command("go", "build", "-o", loadBin, "./testdata/saga-load")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build saga-load: %v\n%s", err, out)
	}
	m.CopyIn(t, loadBin, "/usr/local/bin/saga-load")
	register := func(id string) {
		t.Helper()
		m.Run(t, "saga", "register", "web", "--id", id, "--address", "10.0.0.1", "--port", "80", "--ttl", "10m")
	}
	register("before")
	m.Run(t, "systemd-run", "--unit=saga-load", "--property=StandardOutput=file:/root/load.json",
		"--property=StandardError=file:/root/load.err", "/usr/local/bin/saga-load", "-want", "before,after-restart,after-upgrade")
	time.Sleep(2 * time.Second)

	// A restart: systemd keeps the socket while one process ends and the next starts.
	pid := mainPID(t, m)
	start = time.Now()
	m.Run(t, "systemctl", "restart", "saga")
	t.Logf("systemctl restart saga: %s", time.Since(start).Round(time.Millisecond))
	if got := mainPID(t, m); got == pid {
		t.Fatalf("systemctl restart left the same process %s", got)
	}
	if got := strings.TrimSpace(m.Run(t, "systemctl", "show", "saga", "--property=NFileDescriptorStore", "--value")); got != "1" {
		t.Errorf("systemd holds %s file descriptors for saga; want 1, the listening socket", got)
	}
	register("after-restart")
	time.Sleep(2 * time.Second)

	// The upgrade, by name from the repository.
	makeRepo(t, newVersion, key, dist)
	publish(dist, "saga")
	pid = mainPID(t, m)
	start = time.Now()
	apt("update")
	apt("upgrade")
	t.Logf("apt-get update && apt-get upgrade: %s", time.Since(start).Round(time.Millisecond))
	if h, ok := healthOn(m, 8030); !ok || h.Version != newVersion {
		t.Errorf("after apt-get upgrade: %+v, %v; want version %s", h, ok, newVersion)
	}
	if got := mainPID(t, m); got == pid {
		t.Errorf("apt-get upgrade left the old process %s running", got)
	}
	if !strings.Contains(string(m.ReadFile(t, "/etc/saga/config.toml")), "\nread_rate = 0\n") {
		t.Error("the upgrade replaced the edited /etc/saga/config.toml")
	}
	register("after-upgrade")

	m.Run(t, "systemctl", "stop", "saga-load")
	var rep loadReport
	if err := json.Unmarshal(m.ReadFile(t, "/root/load.json"), &rep); err != nil {
		t.Fatalf("saga-load report: %v\n%s\nstderr: %s", err, m.ReadFile(t, "/root/load.json"), m.ReadFile(t, "/root/load.err"))
	}
	t.Logf("lookups: %d sent, %d failed (refused or not 200), %d cut; blocking queries: %d sent, %d drained (503 + Retry-After, asked again), %d failed; failures: %v",
		rep.Lookups, rep.LookupsFailed, rep.LookupsCut, rep.Blocking, rep.Drained, rep.BlockingFail, rep.Failures)
	// A failure is what the issue names: a refused connection or an answer
	// other than 200. A connection cut without an answer (EOF) can happen
	// to a request that meets a closing keep-alive connection; it is
	// counted and bounded, not hidden: one in 10,000 lookups at most.
	if rep.Lookups == 0 || rep.LookupsFailed != 0 || rep.BlockingFail != 0 || rep.LookupsCut*10000 > rep.Lookups {
		t.Errorf("failures through the restart and the upgrade: %+v\nstderr: %s", rep, m.ReadFile(t, "/root/load.err"))
	}
	if len(rep.Seen) != 8 {
		t.Errorf("%d blocking clients reported; want 8", len(rep.Seen))
	}
	for name, ids := range rep.Seen {
		if strings.Join(ids, ",") != "after-restart,after-upgrade,before" {
			t.Errorf("%s saw %v; want before, after-restart and after-upgrade", name, ids)
		}
	}

	// A repository signed with another key than the one trusted is refused.
	other := newSigningKey(t, "Someone else")
	otherDist := t.TempDir()
	makeRepo(t, newVersion, other, otherDist)
	publish(otherDist, "other")
	m.WriteFile(t, "/etc/apt/sources.list.d/other.list",
		[]byte("deb [signed-by=/etc/apt/keyrings/saga-archive-keyring.gpg] file:/srv/other/apt stable main\n"), 0o644)
	code, out, errOut := m.ExitCode(t, "apt-get", "update")
	if code == 0 || !strings.Contains(out+errOut, "NO_PUBKEY") {
		t.Errorf("apt-get update with a repository signed by another key: exit %d\n%s%s", code, out, errOut)
	}
}
