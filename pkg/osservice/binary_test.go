package osservice

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// binaryTree is a temp directory standing in for a machine's file system:
// a downloaded saga, a bin directory for setup to fill, and PATH
// directories.
type binaryTree struct {
	root string
	exe  string // the downloaded, running saga
	bin  string // setup's target directory, not created yet
}

func newBinaryTree(t *testing.T) binaryTree {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tree := binaryTree{root: root, exe: filepath.Join(root, "Downloads", "saga"), bin: filepath.Join(root, "usr", "local", "bin")}
	tree.write(t, tree.exe, "saga v2")
	return tree
}

// write creates an executable file with content.
func (b binaryTree) write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (b binaryTree) host(exe string, env map[string]string) Host {
	return fakeHost("linux", 0, exe, nil, env)
}

func TestPlaceBinaryCopiesADownloadedSaga(t *testing.T) {
	tests := []struct {
		name       string
		path       func(b binaryTree) string // PATH
		oldVersion bool                      // the target holds an older saga
		wantOnPath func(b binaryTree) string
	}{
		{"nothing installed, target on PATH", func(b binaryTree) string { return b.bin }, false,
			func(b binaryTree) string { return filepath.Join(b.bin, "saga") }},
		{"an older copy is replaced", func(b binaryTree) string { return b.bin }, true,
			func(b binaryTree) string { return filepath.Join(b.bin, "saga") }},
		{"target not on PATH", func(binaryTree) string { return "" }, false,
			func(binaryTree) string { return "" }},
		{"another saga earlier on PATH", func(b binaryTree) string { return filepath.Join(b.root, "opt") + ":" + b.bin }, false,
			func(b binaryTree) string { return filepath.Join(b.root, "opt", "saga") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBinaryTree(t)
			b.write(t, filepath.Join(b.root, "opt", "saga"), "another saga")
			if tt.oldVersion {
				b.write(t, filepath.Join(b.bin, "saga"), "saga v1")
			}
			done, err := b.host(b.exe, map[string]string{"PATH": tt.path(b)}).PlaceBinary(b.bin)
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(b.bin, "saga")
			want := BinaryPlacement{Outcome: BinaryCopied, Path: target, OnPath: tt.wantOnPath(b)}
			if done != want {
				t.Fatalf("PlaceBinary = %+v, want %+v", done, want)
			}
			got, err := os.ReadFile(target)
			if err != nil || string(got) != "saga v2" {
				t.Fatalf("%s holds %q (%v), want the running saga's bytes", target, got, err)
			}
			if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o755 {
				t.Errorf("%s has mode %v, want 0755", target, fi.Mode().Perm())
			}
			// Atomic: the copy went through a temp file that was renamed.
			entries, _ := os.ReadDir(b.bin)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{"saga"}) {
				t.Errorf("%s holds %v, want saga alone (no temp file left)", b.bin, names)
			}
		})
	}
}

func TestPlaceBinaryLeavesAnInstalledSagaAlone(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, b binaryTree) (exe string, env map[string]string)
		want   BinaryOutcome
		wantAt func(b binaryTree) string // BinaryPlacement.Installed
	}{
		{"the running saga is the target", func(t *testing.T, b binaryTree) (string, map[string]string) {
			exe := filepath.Join(b.bin, "saga")
			b.write(t, exe, "saga v2")
			return exe, map[string]string{"PATH": b.bin}
		}, BinaryInstalled, func(b binaryTree) string { return filepath.Join(b.bin, "saga") }},
		{"the running saga is the one PATH finds, through a symlink", func(t *testing.T, b binaryTree) (string, map[string]string) {
			link := filepath.Join(b.root, "home", "bin", "saga")
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(b.exe, link); err != nil {
				t.Fatal(err)
			}
			return b.exe, map[string]string{"PATH": filepath.Dir(link)}
		}, BinaryInstalled, func(b binaryTree) string { return b.exe }},
		{"PATH finds Homebrew's saga", func(t *testing.T, b binaryTree) (string, map[string]string) {
			brew := filepath.Join(b.root, "brew")
			b.write(t, filepath.Join(brew, "bin", "saga"), "brewed saga")
			return b.exe, map[string]string{"PATH": filepath.Join(brew, "bin"), "HOMEBREW_PREFIX": brew}
		}, BinaryPackaged, func(b binaryTree) string { return filepath.Join(b.root, "brew", "bin", "saga") }},
		{"the running saga is Homebrew's", func(t *testing.T, b binaryTree) (string, map[string]string) {
			exe := filepath.Join(b.root, "brew", "Cellar", "saga", "1.0.0", "bin", "saga")
			b.write(t, exe, "brewed saga")
			return exe, map[string]string{"PATH": b.bin}
		}, BinaryPackaged, func(b binaryTree) string {
			return filepath.Join(b.root, "brew", "Cellar", "saga", "1.0.0", "bin", "saga")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBinaryTree(t)
			exe, env := tt.setup(t, b)
			before, _ := os.ReadDir(b.bin)
			done, err := b.host(exe, env).PlaceBinary(b.bin)
			if err != nil {
				t.Fatal(err)
			}
			if done.Outcome != tt.want || done.Installed != tt.wantAt(b) || done.Path != exe {
				t.Fatalf("PlaceBinary = %+v; want outcome %d naming %s, and the running saga to run", done, tt.want, tt.wantAt(b))
			}
			if after, _ := os.ReadDir(b.bin); len(after) != len(before) {
				t.Errorf("%s changed: %v, was %v", b.bin, after, before)
			}
		})
	}
}

func TestPackagedSagas(t *testing.T) {
	h := fakeHost("linux", 0, "", nil, map[string]string{})
	for path, want := range map[string]bool{
		// the .deb and .rpm
		DefaultExecutable: true,
		"/home/linuxbrew/.linuxbrew/Cellar/saga/bin/saga": true,
		"/opt/homebrew/bin/saga":                          true,
		SystemBinDir + "/saga":                            false,
		"/home/ann/.local/bin/saga":                       false,
	} {
		if got := h.packaged(path); got != want {
			t.Errorf("packaged(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestPlaceBinarySkipsRelativePathEntries(t *testing.T) {
	b := newBinaryTree(t)
	t.Chdir(filepath.Dir(b.exe)) // "." would find the running saga itself
	done, err := b.host(b.exe, map[string]string{"PATH": ".:Downloads"}).PlaceBinary(b.bin)
	if err != nil || done.Outcome != BinaryCopied || done.OnPath != "" {
		t.Fatalf("PlaceBinary = %+v, %v; want a copy, and no saga found on a relative PATH", done, err)
	}
}

func TestPlaceBinaryErrors(t *testing.T) {
	b := newBinaryTree(t)
	// A file where the directory should be.
	b.write(t, b.bin, "not a directory")
	_, err := b.host(b.exe, nil).PlaceBinary(b.bin)
	if err == nil || !strings.Contains(err.Error(), b.bin) {
		t.Fatalf("PlaceBinary into a file: %v; want an error naming %s", err, b.bin)
	}
	if done, err := fakeHost("windows", 0, b.exe, nil, nil).PlaceBinary(b.bin); err != nil || done != (BinaryPlacement{}) {
		t.Fatalf("on Windows PlaceBinary = %+v, %v; want nothing done", done, err)
	}
}

func TestBinDir(t *testing.T) {
	for _, tt := range []struct {
		euid int
		home string
		want string
	}{
		{0, "/root", "/usr/local/bin"},
		{1000, "/home/ann", "/home/ann/.local/bin"},
		{1000, "", ""},
	} {
		if got := fakeHost("linux", tt.euid, "", nil, nil).BinDir(tt.home); got != tt.want {
			t.Errorf("BinDir for uid %d, home %q = %q, want %q", tt.euid, tt.home, got, tt.want)
		}
	}
}
