package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runInProcess runs the saga command line with env as its whole
// environment.
func runInProcess(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(name string) string { return env[name] }
	code = run(t.Context(), args, getenv, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestConfigShowNamesEachLayerAndMasksSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("[server]\nport = 9000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"HOME":            dir,
		"SAGA_CONFIG_DIR": dir,
		"SAGA_LOG_LEVEL":  "debug",
		"REDIS_URL":       "redis://app:hunter2@127.0.0.1:6379/0",
	}
	stdout, stderr, code := runInProcess(t, env, "config", "show", "-o", "json", "--host", "0.0.0.0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var shown configJSON
	if err := json.Unmarshal([]byte(stdout), &shown); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	if shown.File != file || !shown.FileFound {
		t.Errorf("file %q found=%v, want %q found", shown.File, shown.FileFound, file)
	}
	want := map[string]settingJSON{
		"server.host":  {Key: "server.host", Value: "0.0.0.0", Layer: "flag", From: "--host"},
		"server.port":  {Key: "server.port", Value: "9000", Layer: "file", From: file},
		"log.level":    {Key: "log.level", Value: "debug", Layer: "environment", From: "SAGA_LOG_LEVEL"},
		"redis.url":    {Key: "redis.url", Value: "redis://app:****@127.0.0.1:6379/0", Layer: "environment", From: "REDIS_URL"},
		"registry.ttl": {Key: "registry.ttl", Value: "60s", Layer: "default"},
	}
	for _, s := range shown.Settings {
		if w, ok := want[s.Key]; ok {
			if s != w {
				t.Errorf("setting %+v, want %+v", s, w)
			}
			delete(want, s.Key)
		}
	}
	for key := range want {
		t.Errorf("no setting %s", key)
	}

	table, _, code := runInProcess(t, env, "config", "show", "--host", "0.0.0.0")
	if code != 0 || strings.Contains(table, "hunter2") || !strings.Contains(table, "redis://app:****@127.0.0.1:6379/0") {
		t.Fatalf("table (exit %d) shows the password or not the masked URL:\n%s", code, table)
	}
	for _, line := range []string{"# file: " + file, "server.port", "file " + file, "environment SAGA_LOG_LEVEL", "flag --host"} {
		if !strings.Contains(table, line) {
			t.Errorf("table lacks %q:\n%s", line, table)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir}
	stdout, stderr, code := runInProcess(t, env, "config", "check")
	if code != 0 || !strings.HasPrefix(stdout, "config ok (file: ") || stderr != "" {
		t.Fatalf("check of defaults: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	env["HEARTBEAT_INTERVAL"] = "2m"
	stdout, stderr, code = runInProcess(t, env, "config", "check")
	want := `saga: config: registry.heartbeat_interval: "120s" must be shorter than registry.ttl (60s) (from environment HEARTBEAT_INTERVAL)` + "\n"
	if code != 1 || stderr != want || stdout != "" {
		t.Fatalf("check of a bad value: exit %d, stdout %q, stderr\n got %q\nwant %q", code, stdout, stderr, want)
	}
}

func TestConfigInitNeverOverwritesWithoutForce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "saga")
	env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir}
	path := filepath.Join(dir, "config.toml")
	stdout, stderr, code := runInProcess(t, env, "config", "init")
	if code != 0 || stdout != "wrote "+path+"\n" {
		t.Fatalf("init: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, _, code := runInProcess(t, env, "config", "check"); code != 0 {
		t.Fatal("the written file does not pass config check")
	}
	if err := os.WriteFile(path, []byte("[server]\nport = 9001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runInProcess(t, env, "config", "init")
	if code != 1 || !strings.Contains(stderr, "already exists (use --force") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("init over a file: exit %d, stderr %q; want 1 and a refusal", code, stderr)
	}
	if b, _ := os.ReadFile(path); string(b) != "[server]\nport = 9001\n" {
		t.Fatalf("refused init changed the file: %q", b)
	}
	if _, stderr, code := runInProcess(t, env, "config", "init", "--force"); code != 0 {
		t.Fatalf("init --force: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "9001") {
		t.Fatal("init --force kept the old file")
	}

	other := filepath.Join(t.TempDir(), "elsewhere.toml")
	if stdout, _, code := runInProcess(t, env, "config", "init", "--config", other); code != 0 || stdout != "wrote "+other+"\n" {
		t.Fatalf("init --config: exit %d, stdout %q", code, stdout)
	}
}

func TestCompletionScripts(t *testing.T) {
	tests := []struct{ shell, marker string }{
		{"bash", "__start_saga"},
		{"zsh", "#compdef saga"},
		{"fish", "complete -c saga"},
		{"powershell", "Register-ArgumentCompleter"},
	}
	for _, tt := range tests {
		stdout, stderr, code := runInProcess(t, nil, "completion", tt.shell)
		if code != 0 || !strings.Contains(stdout, tt.marker) {
			t.Errorf("completion %s: exit %d, stderr %q, output lacks %q", tt.shell, code, stderr, tt.marker)
		}
	}
	_, stderr, code := runInProcess(t, nil, "completion", "tcsh")
	if code != 1 || stderr != "saga: shell: \"tcsh\" must be bash, zsh, fish or powershell\n" {
		t.Errorf("completion tcsh: exit %d, stderr %q", code, stderr)
	}
}
