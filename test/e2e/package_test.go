//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the top of the repository, where `make package` runs.
const repoRoot = "../.."

// The two package versions the upgrade test moves between.
const (
	oldVersion = "1.0.0"
	newVersion = "1.0.1"
)

// packages are the .deb and .rpm that `make package` built.
type packages struct{ deb, rpm string }

// makePackages runs `make package` for version into a directory of its own.
func makePackages(t *testing.T, version string) packages {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot, "package", "VERSION="+version, "PACKAGE_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package VERSION=%s: %v\n%s", version, err, tail(out, 3000))
	}
	var p packages
	debs, _ := filepath.Glob(filepath.Join(dir, "saga_"+version+"-1_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "saga-"+version+"-1.*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package VERSION=%s made %v and %v; want one .deb and one .rpm", version, debs, rpms)
	}
	p.deb, p.rpm = debs[0], rpms[0]
	return p
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 3000))
	}
	return string(out)
}

// TestPackages builds the packages twice at one version and once at a newer
// one, then checks them from the outside (lintian, rpmlint, rpm, dpkg-deb),
// in a chroot without systemd, and through a whole install, upgrade,
// remove and purge in a booted Debian.
func TestPackages(t *testing.T) {
	old := makePackages(t, oldVersion)

	t.Run("reproducible", func(t *testing.T) {
		again := makePackages(t, oldVersion)
		if a, b := sha256File(t, old.deb), sha256File(t, again.deb); a != b {
			t.Errorf("two builds of the .deb differ: %s and %s", a, b)
		}
		if a, b := sha256File(t, old.rpm), sha256File(t, again.rpm); a != b {
			t.Errorf("two builds of the .rpm differ: %s and %s", a, b)
		}
	})

	t.Run("lint", func(t *testing.T) {
		run(t, "lintian", "--fail-on", "error,warning", old.deb)
		out := run(t, "sh", filepath.Join(repoRoot, "packaging/rpmlint.sh"), old.rpm)
		if !strings.Contains(out, " 0 errors") {
			t.Errorf("rpmlint reports errors:\n%s", out)
		}
	})

	t.Run("rpm", func(t *testing.T) { checkRPM(t, old.rpm) })
	t.Run("deb contents", func(t *testing.T) { checkDebContents(t, old.deb) })
	t.Run("chroot without systemd", func(t *testing.T) { installInChroot(t, old.deb) })

	t.Run("install upgrade remove purge", func(t *testing.T) {
		upgrade := makePackages(t, newVersion)
		debLifecycle(t, old.deb, upgrade.deb)
	})
}

func checkRPM(t *testing.T, rpm string) {
	flags := run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	for _, want := range []string{"/etc/saga/config.toml cn\n", "/etc/sysconfig/saga cn\n"} {
		if !strings.Contains(flags, want) {
			t.Errorf("rpm: want %q (config, noreplace) in\n%s", want, flags)
		}
	}
	for _, path := range []string{
		"/usr/bin/saga", "/usr/lib/systemd/system/saga.service", "/usr/lib/sysusers.d/saga.conf",
		"/usr/share/bash-completion/completions/saga", "/usr/share/zsh/vendor-completions/_saga",
		"/usr/share/fish/vendor_completions.d/saga.fish", "/usr/share/man/man1/saga.1.gz",
	} {
		if !strings.Contains(flags, path+" ") {
			t.Errorf("rpm: %s is missing", path)
		}
	}
	if configs := run(t, "rpm", "-qp", "--configfiles", rpm); configs != "/etc/saga/config.toml\n/etc/sysconfig/saga\n" {
		t.Errorf("rpm --configfiles: %q; want config.toml and sysconfig/saga", configs)
	}
	if strings.Contains(flags, "/etc/default/saga") {
		t.Error("rpm: ships /etc/default/saga, which is Debian's place")
	}

	// The scripts branch on $1: 1 = install, 2 = upgrade, 0 = erase.
	scripts := run(t, "rpm", "-qp", "--scripts", rpm)
	for _, want := range []string{
		`if [ "$1" -eq 1 ]; then` + "\n\tsystemctl --no-reload preset saga.service",
		`if [ "$1" -eq 0 ]; then` + "\n\tsystemctl --no-reload disable --now saga.service",
		`if [ "$1" -ge 1 ]; then` + "\n\t\tsystemctl try-restart saga.service",
	} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
		}
	}
}

func checkDebContents(t *testing.T, deb string) {
	conffiles := run(t, "dpkg-deb", "--info", deb, "conffiles")
	for _, want := range []string{"/etc/saga/config.toml", "/etc/default/saga"} {
		if !strings.Contains(conffiles, want+"\n") {
			t.Errorf("deb: %s is not a conffile:\n%s", want, conffiles)
		}
	}
	listing := run(t, "dpkg-deb", "--contents", deb)
	for _, want := range []string{
		"./usr/bin/saga", "./usr/lib/systemd/system/saga.service", "./usr/lib/sysusers.d/saga.conf",
		"./usr/share/man/man1/saga.1.gz", "./usr/share/doc/saga/copyright", "./usr/share/doc/saga/changelog.Debian.gz",
	} {
		if !strings.Contains(listing, want+"\n") {
			t.Errorf("deb: %s is missing", want)
		}
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot, "init/saga.service"))
	if err != nil {
		t.Fatal(err)
	}
	shipped := run(t, "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./usr/lib/systemd/system/saga.service`, "sh", deb)
	if shipped != string(unit) {
		t.Error("deb: the shipped unit is not init/saga.service")
	}
}

// installInChroot installs the .deb where no systemd runs (as in an image
// build or a chroot): the scripts must succeed and start nothing.
func installInChroot(t *testing.T, deb string) {
	rootfs, err := cachedRootfs()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	run(t, "cp", "-a", "--reflink=auto", rootfs, root)
	debIn := "/root/" + filepath.Base(deb)
	run(t, "cp", deb, filepath.Join(root, debIn))

	chroot := func(args ...string) (string, error) {
		full := append([]string{root, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive"}, args...)
		out, err := exec.Command("chroot", full...).CombinedOutput()
		return string(out), err
	}
	if out, err := chroot("dpkg", "-i", debIn); err != nil {
		t.Fatalf("dpkg -i in a chroot: %v\n%s", err, out)
	}
	if out, err := chroot("getent", "passwd", "saga"); err != nil || !strings.Contains(out, ":/var/lib/saga:") {
		t.Errorf("no saga user after installing in a chroot: %v %s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/saga.service")); err != nil {
		t.Errorf("the unit is not enabled for the chroot's next boot: %v", err)
	}
	if out, err := chroot("dpkg", "--purge", "saga"); err != nil {
		t.Fatalf("dpkg --purge in a chroot: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/saga")); !os.IsNotExist(err) {
		t.Errorf("/etc/saga is still there after purge in a chroot (%v)", err)
	}
}

// health is what the lifecycle test reads from /api/v1/health.
type health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

func healthOn(m *Machine, port int) (health, bool) {
	var h health
	out, _, err := m.Exec("curl", "-fsS", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/api/v1/health", port))
	if err != nil || json.Unmarshal([]byte(out), &h) != nil {
		return h, false
	}
	return h, true
}

func debLifecycle(t *testing.T, oldDeb, newDeb string) {
	m := bootDebian(t)
	apt := func(args ...string) string {
		t.Helper()
		return m.Run(t, append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"}, args...)...)
	}
	oldIn, newIn := "/root/"+filepath.Base(oldDeb), "/root/"+filepath.Base(newDeb)
	m.CopyIn(t, oldDeb, oldIn)
	m.CopyIn(t, newDeb, newIn)

	// A fresh install starts the service, enables it, and runs it as saga.
	apt("install", oldIn)
	if got := isActive(m); got != "active" {
		t.Fatalf("after install saga is %q; want active", got)
	}
	if got := strings.TrimSpace(m.Run(t, "systemctl", "is-enabled", "saga")); got != "enabled" {
		t.Errorf("after install saga is %q at boot; want enabled", got)
	}
	var h health
	Eventually(t, restartWithin, "the installed service answers health", func() bool {
		var ok bool
		h, ok = healthOn(m, 8030)
		return ok
	})
	if h.Status != "healthy" || h.Version != oldVersion {
		t.Errorf("health after install: %+v; want healthy, version %s", h, oldVersion)
	}
	oldPID := mainPID(t, m)
	if owner := strings.TrimSpace(m.Run(t, "ps", "-o", "user=", "-p", oldPID)); owner != "saga" {
		t.Errorf("the service runs as %q; want saga", owner)
	}

	// The operator moves it to another port, without restarting it.
	m.Run(t, "sed", "-i", "s/^# port = 8030$/port = 8040/", "/etc/saga/config.toml")
	if !strings.Contains(string(m.ReadFile(t, "/etc/saga/config.toml")), "\nport = 8040\n") {
		t.Fatal("could not edit the port in /etc/saga/config.toml")
	}

	// The upgrade keeps the edit and restarts into the new version.
	apt("install", newIn)
	if !strings.Contains(string(m.ReadFile(t, "/etc/saga/config.toml")), "\nport = 8040\n") {
		t.Error("the upgrade replaced the edited /etc/saga/config.toml")
	}
	Eventually(t, restartWithin, "the upgraded service answers on the edited port", func() bool {
		h, ok := healthOn(m, 8040)
		return ok && h.Version == newVersion
	})
	if got := isActive(m); got != "active" {
		t.Errorf("after the upgrade saga is %q; want active", got)
	}
	if pid := mainPID(t, m); pid == oldPID || pid == "0" {
		t.Errorf("after the upgrade the main process is %s (was %s); want a new one", pid, oldPID)
	}
	if _, err := os.Stat(filepath.Join(m.Root, "var/lib/saga")); err != nil {
		t.Fatalf("no state directory while running: %v", err)
	}

	// Removal stops it and keeps the configuration.
	apt("remove", "saga")
	if got := isActive(m); got == "active" {
		t.Error("saga is still active after apt remove")
	}
	if _, err := os.Stat(filepath.Join(m.Root, "usr/bin/saga")); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/saga is still there after remove (%v)", err)
	}
	if !strings.Contains(string(m.ReadFile(t, "/etc/saga/config.toml")), "\nport = 8040\n") {
		t.Error("apt remove lost the edited /etc/saga/config.toml")
	}

	// Purge removes configuration and state.
	apt("purge", "saga")
	for _, path := range []string{"etc/saga", "etc/default/saga", "var/lib/saga"} {
		if _, err := os.Stat(filepath.Join(m.Root, path)); !os.IsNotExist(err) {
			t.Errorf("/%s is still there after purge (%v)", path, err)
		}
	}
	if code, _, _ := m.ExitCode(t, "systemctl", "is-enabled", "saga"); code == 0 {
		t.Error("saga is still enabled after purge")
	}

	// Installed again after the purge, it runs as an operator first finds
	// it (auth off, plain HTTP on 127.0.0.1:8030); then they secure it.
	apt("install", newIn)
	Eventually(t, restartWithin, "the service installed after the purge answers health", func() bool {
		_, ok := healthOn(m, 8030)
		return ok
	})
	t.Run("auth and TLS by reload", func(t *testing.T) { securePackagedService(t, m) })
}

// podman runs podman the way this machine needs it (see the Makefile).
func podman(args ...string) *exec.Cmd {
	return exec.Command("podman", append([]string{"--runtime", "runc", "--cgroup-manager=cgroupfs"}, args...)...)
}

// compressedImageSize is the size of the image saved as an archive and
// gzipped, which is about what a registry holds.
func compressedImageSize(t *testing.T, image string) int64 {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	if out, err := podman("save", "--quiet", "--output", archive, image).CombinedOutput(); err != nil {
		t.Fatalf("podman save: %v\n%s", err, out)
	}
	in, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var counted byteCounter
	zw := gzip.NewWriter(&counted)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return int64(counted)
}

type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestImage builds the OCI image with `make image` and runs it with podman.
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: `make package-deps` installs it")
	}
	image := "localhost/saga-e2e-" + randomHex(4)
	out, err := exec.Command("make", "-C", repoRoot, "image", "CONTAINER_ENGINE=podman", "IMAGE="+image, "VERSION="+oldVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, tail(out, 3000))
	}
	t.Cleanup(func() {
		_ = podman("rmi", "--force", image+":"+oldVersion, image+":latest").Run()
	})

	img := inspectImage(t, image+":"+oldVersion)
	// Under 20 MB as a registry stores it and a client downloads it: the
	// layers gzip-compressed.
	if size := compressedImageSize(t, image+":"+oldVersion); size >= 20<<20 {
		t.Errorf("the image is %d bytes compressed (%d unpacked); want under 20 MB", size, img.Size)
	} else {
		t.Logf("image: %d bytes compressed, %d unpacked", size, img.Size)
	}
	if img.Config.User != "65532:65532" {
		t.Errorf("image user %q; want 65532:65532", img.Config.User)
	}
	if got := img.Config.Labels["org.opencontainers.image.version"]; got != oldVersion {
		t.Errorf("label org.opencontainers.image.version = %q; want %s", got, oldVersion)
	}
	if hc := img.Healthcheck; hc == nil || strings.Join(hc.Test, " ") != "CMD /usr/bin/saga health --quiet" {
		t.Errorf("image health check %+v; want saga health --quiet", hc)
	}
	if !strings.Contains(strings.Join(img.Config.Env, " "), "SAGA_SERVER_HOST=0.0.0.0") {
		t.Errorf("the image does not listen on 0.0.0.0 by default: %v", img.Config.Env)
	}

	version, err := podman("run", "--rm", image+":"+oldVersion, "--version").Output()
	if err != nil || !strings.HasPrefix(string(version), "saga "+oldVersion+" ") {
		t.Errorf("saga --version in the image: %v %q", err, version)
	}

	// Host networking on a free loopback port; SAGA_ADDR, which wins over
	// the configuration, points the image's HEALTHCHECK (saga health) at it.
	port := freePort(t)
	name := "saga-e2e-" + randomHex(4)
	addr := "http://127.0.0.1:" + strconv.Itoa(port)
	if out, err := podman("run", "--detach", "--name", name, "--network", "host",
		"--env", "SAGA_SERVER_HOST=127.0.0.1", "--env", "SAGA_SERVER_PORT="+strconv.Itoa(port),
		"--env", "SAGA_ADDR="+addr, image+":"+oldVersion).CombinedOutput(); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = podman("rm", "--force", "--volumes", name).Run() })

	client := &http.Client{Timeout: 2 * time.Second}
	var h health
	Eventually(t, 20*time.Second, "the container answers /api/v1/health", func() bool {
		resp, err := client.Get(addr + "/api/v1/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil
	})
	if h.Status != "healthy" || h.Version != oldVersion {
		t.Errorf("health from the container: %+v; want healthy, version %s", h, oldVersion)
	}

	pid, err := podman("inspect", "--format", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect: %v", err)
	}
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(status, []byte("\nUid:\t65532\t")) {
		t.Errorf("the container's process does not run as uid 65532:\n%s", status)
	}

	if out, err := podman("healthcheck", "run", name).CombinedOutput(); err != nil {
		t.Errorf("podman healthcheck run: %v\n%s", err, out)
	}

	// Without SAGA_ADDR, the HEALTHCHECK finds the port the server was given.
	t.Run("PORT=9000", func(t *testing.T) { checkHealthyOnPort(t, image+":"+oldVersion, oldVersion, 9000, "PORT=9000") })

	// Through a published port, as users run it: protected mode as the
	// image comes, and auth with a mounted bootstrap token.
	t.Run("protected mode", func(t *testing.T) { checkProtectedMode(t, image+":"+oldVersion) })
	t.Run("auth", func(t *testing.T) { checkAuthWithBootstrapFile(t, image+":"+oldVersion) })
}
