package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func genMan(t *testing.T, env map[string]string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	if code := run(context.Background(), []string{"gen-man", dir}, getenv, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("gen-man exited %d: %s", code, stderr.String())
	}
	return dir
}

func TestGenManWritesOnePagePerCommand(t *testing.T) {
	dir := genMan(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"})
	root, err := os.ReadFile(filepath.Join(dir, "saga.1"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(root)
	if !strings.Contains(page, `.TH "SAGA" "1" "Nov 2023"`) {
		t.Errorf("saga.1 header does not carry the SOURCE_DATE_EPOCH date:\n%.300s", page)
	}
	if strings.Contains(page, "Auto generated") {
		t.Error("saga.1 carries cobra's dated footer, so builds would differ")
	}
	for _, cmd := range []string{"serve", "version"} {
		if _, err := os.Stat(filepath.Join(dir, "saga-"+cmd+".1")); err != nil {
			t.Errorf("no page for saga %s: %v", cmd, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "saga-gen-man.1")); err == nil {
		t.Error("the hidden gen-man command got a page")
	}
}

func TestGenManIsReproducible(t *testing.T) {
	env := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	a, b := genMan(t, env), genMan(t, env)
	pages, err := filepath.Glob(filepath.Join(a, "*.1"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages: %v", err)
	}
	for _, p := range pages {
		first, _ := os.ReadFile(p)
		second, err := os.ReadFile(filepath.Join(b, filepath.Base(p)))
		if err != nil || !bytes.Equal(first, second) {
			t.Errorf("%s differs between two runs (%v)", filepath.Base(p), err)
		}
	}
}

func TestGenManRejectsABadSourceDateEpoch(t *testing.T) {
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return "yesterday"
		}
		return ""
	}
	code := run(context.Background(), []string{"gen-man", t.TempDir()}, getenv, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "SOURCE_DATE_EPOCH") {
		t.Errorf("exit %d, stderr %q; want a failure naming SOURCE_DATE_EPOCH", code, stderr.String())
	}
}
