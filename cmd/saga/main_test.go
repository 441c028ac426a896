package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// stampedVersion is the version the test binary is built with, as a
// release build would be.
const stampedVersion = "1.2.3"

// sagaBinary is the real saga binary that the end-to-end tests run, built
// once by TestMain (with the race detector when the tests have it).
var sagaBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "saga-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer closeBrowser() // the console tests' browser, when they started it
	sagaBinary = filepath.Join(dir, "saga")
	args := []string{"build", "-o", sagaBinary, "-ldflags", "-X main.version=" + stampedVersion}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build saga:", err)
		return 1
	}
	return m.Run()
}
