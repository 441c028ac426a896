//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseSnapshot runs the whole release locally (`make
// release-snapshot`: goreleaser with nothing published) and checks what it
// made: archives for every platform, checksums that verify, SBOMs, the
// packages, a Homebrew formula that Ruby parses, and the images.
func TestReleaseSnapshot(t *testing.T) {
	if _, err := exec.LookPath("ruby"); err != nil {
		t.Fatal("ruby is not installed: `make package-deps` installs it")
	}
	out, err := exec.Command("make", "-C", repoRoot, "release-snapshot").CombinedOutput()
	if err != nil {
		t.Fatalf("make release-snapshot: %v\n%s", err, tail(out, 4000))
	}
	dist := filepath.Join(repoRoot, "dist")

	var meta struct{ Version string }
	raw, err := os.ReadFile(filepath.Join(dist, "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Version == "" {
		t.Fatalf("dist/metadata.json: %v %s", err, raw)
	}
	v := meta.Version
	t.Cleanup(func() {
		for _, arch := range []string{"amd64", "arm64"} {
			_ = podman("rmi", "--force", "ghcr.io/sagaproject/saga:"+v+"-"+arch).Run()
		}
	})

	for _, osName := range []string{"linux", "darwin", "windows"} {
		for _, arch := range []string{"amd64", "arm64"} {
			ext := ".tar.gz"
			if osName == "windows" {
				ext = ".zip"
			}
			archive := filepath.Join(dist, "saga_"+v+"_"+osName+"_"+arch+ext)
			if _, err := os.Stat(archive); err != nil {
				t.Errorf("archive: %v", err)
			}
			sbom := filepath.Join(dist, "saga_"+v+"_"+osName+"_"+arch+".cdx.json")
			var doc struct{ BOMFormat string }
			if b, err := os.ReadFile(sbom); err != nil || json.Unmarshal(b, &doc) != nil || doc.BOMFormat != "CycloneDX" {
				t.Errorf("SBOM %s: %v, format %q", sbom, err, doc.BOMFormat)
			}
		}
	}
	listing := run(t, "tar", "-tzf", filepath.Join(dist, "saga_"+v+"_linux_amd64.tar.gz"))
	for _, want := range []string{"saga", "LICENSE", "README.md", "config.toml", "completions/saga.bash", "completions/_saga", "completions/saga.fish", "man/saga.1.gz"} {
		if !strings.Contains("\n"+listing, "\n"+want+"\n") {
			t.Errorf("the linux archive lacks %s:\n%s", want, listing)
		}
	}

	check := exec.Command("sha256sum", "--check", "--strict", "checksums.txt")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}

	for _, pattern := range []string{"saga_*_amd64.deb", "saga_*_arm64.deb", "saga-*.x86_64.rpm", "saga-*.aarch64.rpm"} {
		if matches, _ := filepath.Glob(filepath.Join(dist, pattern)); len(matches) != 1 {
			t.Errorf("packages: %s matched %v", pattern, matches)
		}
	}
	// The released packages pass the same checks as the ones make builds.
	if debs, _ := filepath.Glob(filepath.Join(dist, "saga_*_amd64.deb")); len(debs) == 1 {
		run(t, "lintian", "--fail-on", "error,warning", debs[0])
	}
	if rpms, _ := filepath.Glob(filepath.Join(dist, "saga-*.x86_64.rpm")); len(rpms) == 1 {
		if out := run(t, "sh", filepath.Join(repoRoot, "packaging/rpmlint.sh"), rpms[0]); !strings.Contains(out, " 0 errors") {
			t.Errorf("rpmlint reports errors on the released rpm:\n%s", out)
		}
	}

	formula := filepath.Join(dist, "homebrew", "Formula", "saga.rb")
	if out, err := exec.Command("ruby", "-c", formula).CombinedOutput(); err != nil {
		t.Errorf("ruby -c %s: %v\n%s", formula, err, out)
	}
	rb, err := os.ReadFile(formula)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"service do", `run [opt_bin/"saga", "serve"]`, "keep_alive true", `log_path var/"log/saga.log"`,
		"def post_install", "unless config.exist?", "test do", "/livez",
	} {
		if !strings.Contains(string(rb), want) {
			t.Errorf("the formula lacks %q", want)
		}
	}

	for _, arch := range []string{"amd64", "arm64"} {
		got, err := podman("image", "inspect", "--format", "{{.Architecture}}", "ghcr.io/sagaproject/saga:"+v+"-"+arch).Output()
		if err != nil || strings.TrimSpace(string(got)) != arch {
			t.Errorf("image for %s: %v, architecture %q", arch, err, got)
		}
	}
}
