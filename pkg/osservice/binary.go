package osservice

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SystemBinDir is where `saga setup` run as root puts a binary that is not
// installed yet; a user's goes to UserBinDir.
const SystemBinDir = "/usr/local/bin"

// UserBinDir is a user's own directory for programs, ~/.local/bin.
func UserBinDir(home string) string { return filepath.Join(home, ".local", "bin") }

// BinDir is where this user's `saga setup` puts the binary: SystemBinDir
// for root, else UserBinDir(home); "" for a user without a home.
func (h Host) BinDir(home string) string {
	switch {
	case h.Euid == 0:
		return SystemBinDir
	case home == "":
		return ""
	}
	return UserBinDir(home)
}

// BinaryOutcome says what PlaceBinary did.
type BinaryOutcome int

// PlaceBinary's outcomes.
const (
	// BinaryCopied: the running binary was copied to the target.
	BinaryCopied BinaryOutcome = iota + 1
	// BinaryInstalled: the running binary is the target already, or the
	// saga that PATH finds; nothing was copied.
	BinaryInstalled
	// BinaryPackaged: the running binary, or the saga that PATH finds,
	// belongs to a package manager (/usr/bin/saga, Homebrew), which keeps
	// it up to date; nothing was copied.
	BinaryPackaged
)

// BinaryPlacement is what PlaceBinary did and found.
type BinaryPlacement struct {
	Outcome BinaryOutcome
	// Path is the saga a service should run: the copy when there is one,
	// else the running binary.
	Path string
	// Installed is the installed saga that made PlaceBinary leave things
	// alone; "" when it copied.
	Installed string
	// OnPath is the saga that PATH finds afterwards, symlinks resolved;
	// "" when PATH finds none.
	OnPath string
}

// PlaceBinary puts the running binary (h.Executable) on the PATH, as the
// setup script of earlier releases did: it copies it to dir/saga with mode
// 0755, atomically (a temp file in dir, then a rename), unless it is the
// installed one already (it is dir/saga, or the saga that PATH finds) or a
// package manager's saga is installed (the running one, or the one on
// PATH). On Windows it does nothing and returns the zero BinaryPlacement.
func (h Host) PlaceBinary(dir string) (BinaryPlacement, error) {
	exe := h.Executable
	onPath := resolve(lookSaga(h.Getenv("PATH")))
	done := BinaryPlacement{Path: exe, OnPath: onPath}
	target := filepath.Join(dir, "saga")
	switch {
	case h.GOOS == "windows":
		return BinaryPlacement{}, nil
	case resolve(target) == exe:
		done.Outcome, done.Installed = BinaryInstalled, target
		return done, nil
	case onPath == exe:
		done.Outcome, done.Installed = BinaryInstalled, onPath
		return done, nil
	case h.packaged(exe):
		done.Outcome, done.Installed = BinaryPackaged, exe
		return done, nil
	case onPath != "" && h.packaged(onPath):
		done.Outcome, done.Installed = BinaryPackaged, onPath
		return done, nil
	}
	if err := copyExecutable(exe, target); err != nil {
		return BinaryPlacement{}, fmt.Errorf("install saga into %s: %w", dir, err)
	}
	return BinaryPlacement{Outcome: BinaryCopied, Path: resolve(target), OnPath: resolve(lookSaga(h.Getenv("PATH")))}, nil
}

// packaged reports whether a package manager installed the saga at path
// (symlinks resolved): the .deb and .rpm put it at DefaultExecutable,
// Homebrew under its prefix.
func (h Host) packaged(path string) bool {
	if path == DefaultExecutable {
		return true
	}
	other := h
	other.Executable = path
	return other.Homebrew()
}

// lookSaga returns the first executable file named saga in the
// directories of pathList, or "". Relative directories are skipped: where
// setup happens to run must not decide what is installed.
func lookSaga(pathList string) string {
	for _, dir := range filepath.SplitList(pathList) {
		if !filepath.IsAbs(dir) {
			continue
		}
		path := filepath.Join(dir, "saga")
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return path
		}
	}
	return ""
}

// resolve returns path with its symlinks resolved; path itself when it
// cannot be resolved (it does not exist), and "" for "".
func resolve(path string) string {
	if path == "" {
		return ""
	}
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		return resolved
	}
	return path
}

// copyExecutable copies src to dst with mode 0755 through a temp file in
// dst's directory and a rename, so that dst is at all times either the old
// file or the whole new one, and a running dst is never overwritten in
// place.
func copyExecutable(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".saga-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
