package tools

import (
	"fmt"
	"os"
	"slices"
	"testing"

	grconfig "github.com/goreleaser/goreleaser/v2/pkg/config"
	"github.com/goreleaser/nfpm/v2"
)

// The make-built packages (nfpm.yaml) and the released ones (goreleaser's
// nfpms) must hold the same files with the same scripts: this test is what
// keeps the two lists from drifting apart.
func TestReleasePackagesMatchNfpmConfig(t *testing.T) {
	env := map[string]string{"VERSION": "1.0.0", "GOARCH": "amd64"}
	nf, err := nfpm.ParseFileWithEnvMapping("../nfpm.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	project, err := grconfig.Load("../.goreleaser.yaml")
	if err != nil {
		t.Fatalf(".goreleaser.yaml: %v", err)
	}
	if len(project.NFPMs) != 1 {
		t.Fatalf(".goreleaser.yaml: %d nfpms, want 1", len(project.NFPMs))
	}
	gr := project.NFPMs[0]

	fields := []struct{ name, nfpm, goreleaser string }{
		{"name", nf.Name, gr.PackageName},
		{"description", nf.Description, gr.Description},
		{"maintainer", nf.Maintainer, gr.Maintainer},
		{"vendor", nf.Vendor, gr.Vendor},
		{"homepage", nf.Homepage, gr.Homepage},
		{"license", nf.License, gr.License},
		{"section", nf.Section, gr.Section},
		{"priority", nf.Priority, gr.Priority},
		{"changelog", nf.Changelog, gr.Changelog},
		{"release", nf.Release, gr.Release},
		{"rpm.summary", nf.RPM.Summary, gr.RPM.Summary},
		{"rpm.group", nf.RPM.Group, gr.RPM.Group},
		{"rpm.compression", nf.RPM.Compression, gr.RPM.Compression},
	}
	for _, f := range fields {
		if f.nfpm != f.goreleaser {
			t.Errorf("%s: nfpm.yaml has %q, .goreleaser.yaml has %q", f.name, f.nfpm, f.goreleaser)
		}
	}

	// goreleaser puts its own build into bindir; nfpm.yaml lists the binary.
	var nfFiles []string
	for _, c := range nf.Contents {
		if c.Destination == "/usr/bin/saga" {
			if gr.Bindir != "/usr/bin" {
				t.Errorf("goreleaser bindir %q, nfpm.yaml installs /usr/bin/saga", gr.Bindir)
			}
			continue
		}
		nfFiles = append(nfFiles, describe(c.Source, c.Destination, c.Type, c.Packager, uint32(c.FileInfo.Mode)))
	}
	var grFiles []string
	for _, c := range gr.Contents {
		grFiles = append(grFiles, describe(c.Source, c.Destination, c.Type, c.Packager, uint32(c.FileInfo.Mode)))
	}
	for _, f := range nfFiles {
		if !slices.Contains(grFiles, f) {
			t.Errorf("only in nfpm.yaml: %s", f)
		}
	}
	for _, f := range grFiles {
		if !slices.Contains(nfFiles, f) {
			t.Errorf("only in .goreleaser.yaml: %s", f)
		}
	}

	for _, format := range []string{"deb", "rpm"} {
		n, g := nf.Overrides[format].Scripts, gr.Overrides[format].Scripts
		got := []string{g.PreInstall, g.PostInstall, g.PreRemove, g.PostRemove}
		want := []string{n.PreInstall, n.PostInstall, n.PreRemove, n.PostRemove}
		if !slices.Equal(got, want) {
			t.Errorf("%s scripts: nfpm.yaml %v, .goreleaser.yaml %v", format, want, got)
		}
		for _, script := range want {
			if script == "" {
				continue
			}
			if _, err := os.Stat("../" + script); err != nil {
				t.Errorf("%s script: %v", format, err)
			}
		}
	}
}

func describe(src, dst, typ, packager string, mode uint32) string {
	return fmt.Sprintf("%s <- %s (type %q, packager %q, mode %o)", dst, src, typ, packager, mode)
}
