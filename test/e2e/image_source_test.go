//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// standInLabel marks a Go builder image that this test made, so that one
// left behind by an interrupted run is told apart from a real one.
const standInLabel = "org.sagaproject.e2e.stand-in"

// TestImageFromSource is the deployment guide's `docker build -t
// saga:latest .`, with podman, at the top of a clean clone: the Dockerfile
// builds saga from source in the Go image it names, and the image serves and
// passes its HEALTHCHECK, on the default port and on the port the guide
// gives it (-e PORT=9000).
//
// No image can be pulled here, so unless the Go image is already present,
// the test makes a stand-in under its name from what it has itself: the
// Debian root file system of the other tests, the Go toolchain running the
// test and a module proxy on disk holding saga's modules. The build then
// runs without a network, which also proves it needs nothing but that image.
func TestImageFromSource(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: `make package-deps` installs it")
	}
	start := time.Now()
	offline := provideGoImage(t, dockerfileGoImage(t))
	t.Logf("builder image ready in %s", time.Since(start).Round(time.Second))

	ctx := cleanClone(t)
	image := "localhost/saga-e2e-src-" + randomHex(4)
	const version, revision, created = "1.0.3", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z"
	args := []string{"build", "--format", "docker", "--layers=false", "--pull=never",
		"--build-arg", "VERSION=" + version, "--build-arg", "REVISION=" + revision, "--build-arg", "CREATED=" + created,
		"--tag", image}
	if offline {
		args = append(args, "--network=none")
	}
	build := podman(append(args, ".")...)
	build.Dir = ctx
	start = time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("podman build .: %v\n%s", err, tail(out, 4000))
	}
	t.Logf("podman build . took %s", time.Since(start).Round(time.Second))
	t.Cleanup(func() { _ = podman("rmi", "--force", image).Run() })

	img := inspectImage(t, image)
	if img.Config.User != "65532:65532" {
		t.Errorf("image user %q; want 65532:65532", img.Config.User)
	}
	if _, ok := img.Config.ExposedPorts["8030/tcp"]; !ok {
		t.Errorf("the image exposes %v; want 8030/tcp", img.Config.ExposedPorts)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  created,
		"org.opencontainers.image.source":   "https://github.com/sagaproject/saga",
	} {
		if got := img.Config.Labels[label]; got != want {
			t.Errorf("label %s = %q; want %q", label, got, want)
		}
	}
	if hc := img.Healthcheck; hc == nil || strings.Join(hc.Test, " ") != "CMD /usr/bin/saga health --quiet" {
		t.Errorf("image health check %+v; want saga health --quiet", hc)
	}
	if !slices.Contains(img.Config.Env, "SAGA_SERVER_HOST=0.0.0.0") {
		t.Errorf("the image does not listen on 0.0.0.0 by default: %v", img.Config.Env)
	}
	stamped, err := podman("run", "--rm", "--network=none", image, "--version").Output()
	if want := "saga " + version + " (commit " + revision + ", built " + created + ", "; err != nil || !strings.HasPrefix(string(stamped), want) {
		t.Errorf("saga --version in the image: %v %q; want it to start with %q", err, stamped, want)
	}
	// The CA bundle comes from the builder, for rediss:// and TLS.
	if size := imageFileSize(t, image, "/etc/ssl/certs/ca-certificates.crt"); size < 10_000 {
		t.Errorf("the image's CA bundle has %d bytes; want a real one", size)
	}

	t.Run("default port", func(t *testing.T) { checkHealthyOnPort(t, image, version, 8030) })
	t.Run("PORT=9000", func(t *testing.T) { checkHealthyOnPort(t, image, version, 9000, "PORT=9000") })
	t.Run("SAGA_SERVER_PORT=9001", func(t *testing.T) { checkHealthyOnPort(t, image, version, 9001, "SAGA_SERVER_PORT=9001") })
}

// checkHealthyOnPort runs image in a network of its own (nothing is
// published) with env, and checks that its HEALTHCHECK passes, with no
// SAGA_ADDR or --server to help it, and that the server answers on port
// and not on the default one.
func checkHealthyOnPort(t *testing.T, image, version string, port int, env ...string) {
	t.Helper()
	name := "saga-e2e-" + randomHex(4)
	args := []string{"run", "--detach", "--name", name, "--network=none"}
	for _, e := range env {
		args = append(args, "--env", e)
	}
	if out, err := podman(append(args, image)...).CombinedOutput(); err != nil {
		t.Fatalf("podman run %s: %v\n%s", strings.Join(env, " "), err, out)
	}
	t.Cleanup(func() { _ = podman("rm", "--force", "--volumes", name).Run() })

	var last []byte
	Eventually(t, 30*time.Second, "the container's HEALTHCHECK passes", func() bool {
		var err error
		last, err = podman("healthcheck", "run", name).CombinedOutput()
		return err == nil
	})
	status, err := podman("inspect", "--format", "{{.State.Health.Status}}", name).Output()
	if err != nil || strings.TrimSpace(string(status)) != "healthy" {
		t.Errorf("the container's health status is %q (%v; last check said %q); want healthy", status, err, last)
	}

	// The client in the image finds the server the same way.
	out, err := podman("exec", name, "/usr/bin/saga", "health", "-o", "json").Output()
	var h health
	if err != nil || json.Unmarshal(out, &h) != nil || h.Status != "healthy" || h.Version != version {
		t.Errorf("saga health in the container: %v %s; want healthy, version %s", err, out, version)
	}
	addr := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := podman("exec", name, "/usr/bin/saga", "health", "--quiet", "--server", addr).Run(); err != nil {
		t.Errorf("saga health --server %s in the container: %v; want the server there", addr, err)
	}
	if port != 8030 {
		if err := podman("exec", name, "/usr/bin/saga", "health", "--quiet", "--server", "127.0.0.1:8030").Run(); err == nil {
			t.Errorf("something answers on 8030 in the container started with %s", strings.Join(env, " "))
		}
	}
}

// TestImageDockerfilesAgree: the Dockerfile that builds from source and the
// one the releases use end in the same image; only where the files come
// from differs.
func TestImageDockerfilesAgree(t *testing.T) {
	source := finalStage(t, filepath.Join(repoRoot, "Dockerfile"))
	release := finalStage(t, filepath.Join(repoRoot, "packaging", "image", "Dockerfile"))
	split := func(stage []string) (other, copied []string) {
		for _, line := range stage {
			if strings.HasPrefix(line, "COPY ") {
				fields := strings.Fields(line)
				copied = append(copied, fields[len(fields)-1])
				continue
			}
			other = append(other, line)
		}
		return other, copied
	}
	sourceOther, sourceCopied := split(source)
	releaseOther, releaseCopied := split(release)
	if !slices.Equal(sourceOther, releaseOther) {
		t.Errorf("the final stages differ:\nDockerfile:\n  %s\npackaging/image/Dockerfile:\n  %s",
			strings.Join(sourceOther, "\n  "), strings.Join(releaseOther, "\n  "))
	}
	if !slices.Equal(sourceCopied, releaseCopied) {
		t.Errorf("the final stages copy to %v and %v; want the same places", sourceCopied, releaseCopied)
	}
	if len(sourceOther) < 10 {
		t.Errorf("read only %d instructions from the final stage: %q", len(sourceOther), sourceOther)
	}
}

// dockerfileLines returns a Dockerfile's instructions, one a line, with
// continuations joined, spaces folded and comments dropped.
func dockerfileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	scanner := bufio.NewScanner(bytes.NewReader(b))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		more := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
		if !more {
			lines = append(lines, strings.Join(strings.Fields(cur.String()), " "))
			cur.Reset()
		}
	}
	return lines
}

// finalStage returns the instructions after a Dockerfile's last FROM.
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	lines := dockerfileLines(t, path)
	last := -1
	for i, line := range lines {
		if strings.HasPrefix(line, "FROM ") {
			last = i
		}
	}
	if last < 0 {
		t.Fatalf("%s has no FROM", path)
	}
	return lines[last+1:]
}

// dockerfileGoImage is the builder image that the top-level Dockerfile
// names (ARG GO_IMAGE=…), in full as an engine reads it:
// golang:1.26-bookworm is docker.io/library/golang:1.26-bookworm.
func dockerfileGoImage(t *testing.T) string {
	t.Helper()
	for _, line := range dockerfileLines(t, filepath.Join(repoRoot, "Dockerfile")) {
		if name, ok := strings.CutPrefix(line, "ARG GO_IMAGE="); ok {
			first, _, path := strings.Cut(name, "/")
			switch {
			case !path:
				return "docker.io/library/" + name
			case strings.ContainsAny(first, ".:") || first == "localhost":
				return name // names its registry
			}
			return "docker.io/" + name
		}
	}
	t.Fatal("the Dockerfile names no builder image (ARG GO_IMAGE=…)")
	return ""
}

// provideGoImage makes sure the Go builder image name is present: a real
// one is used as it is, else a stand-in is made, and removed when the test
// ends. offline reports a stand-in, which needs no network.
func provideGoImage(t *testing.T, name string) (offline bool) {
	t.Helper()
	if podman("image", "exists", name).Run() == nil {
		label, err := podman("image", "inspect", "--format", "{{index .Config.Labels \""+standInLabel+"\"}}", name).Output()
		if err != nil || strings.TrimSpace(string(label)) != "true" {
			t.Logf("using the Go image %s that is already here", name)
			return false
		}
		_ = podman("rmi", "--force", name).Run() // a stand-in left behind: make it afresh
	}
	rootfs, err := cachedRootfs()
	if err != nil {
		t.Fatal(err)
	}
	goroot := goEnv(t, "GOROOT")
	proxy := moduleProxy(t)

	// One archive of the three trees, imported as the image: nothing is
	// copied to a build context first.
	imp := podman("import",
		"--change", "ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--change", "ENV GOPATH=/go",
		"--change", "ENV GOTOOLCHAIN=local",
		"--change", "ENV GOPROXY=file:///goproxy",
		"--change", "ENV GOSUMDB=off", // go.sum still checks every module
		"--change", "WORKDIR /go",
		"--change", "LABEL "+standInLabel+"=true",
		"-", name)
	pipe, err := imp.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	imp.Stdout, imp.Stderr = &out, &out
	if err := imp.Start(); err != nil {
		t.Fatalf("podman import: %v", err)
	}
	tw := tar.NewWriter(pipe)
	werr := errors.Join(addTree(tw, rootfs, ""), addTree(tw, goroot, "usr/local/go"), addTree(tw, proxy, "goproxy"), tw.Close(), pipe.Close())
	if err := imp.Wait(); err != nil || werr != nil {
		t.Fatalf("podman import of the stand-in Go image: %v, %v\n%s", werr, err, tail(out.Bytes(), 3000))
	}
	t.Cleanup(func() { _ = podman("rmi", "--force", name).Run() })
	t.Logf("made a stand-in for %s: Debian %s, %s, saga's modules", name, suite, goEnv(t, "GOVERSION"))
	return true
}

// moduleProxy returns a directory that serves saga's modules as a GOPROXY
// file:// URL does. They come from this machine's module cache (which `go
// mod download` fills first, if it has to, from the usual proxy).
func moduleProxy(t *testing.T) string {
	t.Helper()
	download := exec.Command("go", "mod", "download")
	download.Dir = repoRoot
	if out, err := download.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	cache := filepath.Join(t.TempDir(), "modcache")
	subset := exec.Command("go", "mod", "download")
	subset.Dir = repoRoot
	subset.Env = append(os.Environ(), "GOMODCACHE="+cache, "GOFLAGS=-modcacherw", "GOWORK=off", "GOSUMDB=off",
		"GOPROXY=file://"+filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download"))
	if out, err := subset.CombinedOutput(); err != nil {
		t.Fatalf("go mod download from the module cache: %v\n%s", err, out)
	}
	return filepath.Join(cache, "cache", "download")
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env %s: %v %q", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// addTree writes the directory dir into tw under prefix, keeping modes,
// owners and symbolic links. Devices, sockets and pipes are left out.
func addTree(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		if name == "." {
			name = "./"
		}
		var link string
		switch mode := info.Mode(); {
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		case mode.IsDir(), mode.IsRegular():
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if info.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// cleanClone copies the repository's files as a clone of the working tree
// would have them (tracked and new files; nothing that .gitignore names,
// such as bin/ and dist/) into a temporary directory.
func cleanClone(t *testing.T) string {
	t.Helper()
	list, err := exec.Command("git", "-c", "safe.directory=*", "-C", repoRoot, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "saga")
	copied := 0
	for name := range strings.SplitSeq(strings.TrimSuffix(string(list), "\x00"), "\x00") {
		src := filepath.Join(repoRoot, name)
		info, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(link, target)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		copied++
	}
	if copied < 50 {
		t.Fatalf("git ls-files listed only %d files", copied)
	}
	return dst
}

// imageConfig is what the tests read from `podman image inspect`.
type imageConfig struct {
	Size        int64
	Healthcheck *struct{ Test []string }
	Config      struct {
		User         string
		Env          []string
		Labels       map[string]string
		ExposedPorts map[string]struct{}
	}
}

func inspectImage(t *testing.T, image string) imageConfig {
	t.Helper()
	var inspected []imageConfig
	raw, err := podman("image", "inspect", image).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	if err := json.Unmarshal(raw, &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, raw)
	}
	return inspected[0]
}

// imageFileSize is the size of a file in the image, read from a container
// that is created but never started (the image has no shell to ask).
func imageFileSize(t *testing.T, image, path string) int64 {
	t.Helper()
	id, err := podman("create", image).Output()
	if err != nil {
		t.Fatalf("podman create: %v", err)
	}
	container := strings.TrimSpace(string(id))
	defer func() { _ = podman("rm", "--force", container).Run() }()
	mount, err := podman("mount", container).Output()
	if err != nil {
		t.Fatalf("podman mount: %v", err)
	}
	defer func() { _ = podman("unmount", container).Run() }()
	info, err := os.Stat(filepath.Join(strings.TrimSpace(string(mount)), path))
	if err != nil {
		t.Errorf("%s in the image: %v", path, err)
		return 0
	}
	return info.Size()
}
