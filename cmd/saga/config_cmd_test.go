package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// Every malformed Redis URL fails `saga config check` with one line naming
// the key, the value with its password masked, the reason the store's own
// grammar gives and the layer; the password never shows.
func TestConfigCheckRefusesMalformedRedisURL(t *testing.T) {
	const want = "want redis-sentinel://h1:26379,h2:26379/mastername"
	tests := []struct {
		name   string
		url    string
		masked string
		reason string
	}{
		{"no scheme", "app:hunter2@10.0.0.1:6379", "app:****@10.0.0.1:6379",
			"the scheme is missing: want redis://, rediss://, redis-sentinel:// or redis-cluster://"},
		{"bad scheme", "http://app:hunter2@10.0.0.1:6379", "http://app:****@10.0.0.1:6379",
			`scheme "http" is not redis, rediss, redis-sentinel or redis-cluster`},
		{"missing host", "redis://:hunter2@", "redis://:****@", "the host is missing"},
		{"missing host name", "redis://:hunter2@:6379/0", "redis://:****@:6379/0", `host ":6379": the host name is missing`},
		{"bad port", "redis://app:hunter2@10.0.0.1:abc", "redis://app:****@10.0.0.1:abc", `host "10.0.0.1:abc": port "abc" is not a number 1-65535`},
		{"port out of range", "rediss://app:hunter2@cache:70000", "rediss://app:****@cache:70000", `host "cache:70000": port "70000" is not a number 1-65535`},
		{"bad db number", "redis://app:hunter2@10.0.0.1:6379/x", "redis://app:****@10.0.0.1:6379/x", `database "x" is not a number 0 or above`},
		{"negative db", "redis://10.0.0.1:6379/-1", "redis://10.0.0.1:6379/-1", `database "-1" is not a number 0 or above`},
		{"several hosts on redis://", "redis://hunter2@a:6379,b:6379", "redis://****@a:6379,b:6379",
			"redis:// takes one host; for several use redis-sentinel:// or redis-cluster://"},
		{"IPv6 without brackets", "redis://::1:6379", "redis://::1:6379", `host "::1:6379": put an IPv6 address in brackets, like [::1]:6379`},
		{"query parameters", "redis://10.0.0.1:6379/0?password=hunter2&db=1", "redis://10.0.0.1:6379/0?password=****&db=****",
			"query parameters and fragments are not supported: every option has its own setting"},
		{"bad percent-encoding", "redis://app:hunter2%zz@10.0.0.1", "redis://app:****@10.0.0.1", "the password is not valid percent-encoding"},
		{"password with a slash", "redis://app:hunter2/x@10.0.0.1:abc", "redis://app:****@10.0.0.1:abc", `host "10.0.0.1:abc": port "abc" is not a number 1-65535`},
		{"sentinel without master name", "redis-sentinel://h:26379", "redis-sentinel://h:26379", "the master name is missing: " + want},
		{"sentinel with empty master name", "redis-sentinel://hunter2@h1:26379,h2:26379/", "redis-sentinel://****@h1:26379,h2:26379/", "the master name is missing: " + want},
		{"sentinel master name with a slash", "redis-sentinel://hunter2@h1:26379/a/b", "redis-sentinel://****@h1:26379/a/b", `master name "a/b" holds a '/': ` + want},
		{"sentinel empty host", "redis-sentinel://hunter2@h1:26379,,h2/m", "redis-sentinel://****@h1:26379,,h2/m", "the host list has an empty entry"},
		{"cluster with a db path", "redis-cluster://app:hunter2@n1:7000,n2:7001/0", "redis-cluster://app:****@n1:7000,n2:7001/0",
			`path "/0": a Redis Cluster has no databases, so the URL takes no path`},
		{"cluster bad port", "redis-cluster://app:hunter2@n1:7000,n2:x", "redis-cluster://app:****@n1:7000,n2:x", `host "n2:x": port "x" is not a number 1-65535`},
	}
	// Each case through every layer that can set redis.url.
	layers := []struct {
		from string
		set  func(t *testing.T, dir, url string) (env map[string]string, args []string)
	}{
		{"environment REDIS_URL", func(t *testing.T, dir, url string) (map[string]string, []string) {
			return map[string]string{"REDIS_URL": url}, nil
		}},
		{"environment SAGA_REDIS_URL", func(t *testing.T, dir, url string) (map[string]string, []string) {
			return map[string]string{"SAGA_REDIS_URL": url, "REDIS_URL": "redis://127.0.0.1:6379"}, nil
		}},
		{"flag --redis-url", func(t *testing.T, dir, url string) (map[string]string, []string) {
			return map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"}, []string{"--redis-url", url}
		}},
		{"file FILE", func(t *testing.T, dir, url string) (map[string]string, []string) {
			if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[redis]\nurl = "+strconv.Quote(url)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return nil, nil
		}},
	}
	for _, tt := range tests {
		for _, layer := range layers {
			t.Run(tt.name+"/"+layer.from, func(t *testing.T) {
				dir := t.TempDir()
				extra, args := layer.set(t, dir, tt.url)
				env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir}
				maps.Copy(env, extra)
				stdout, stderr, code := runInProcess(t, env, append([]string{"config", "check"}, args...)...)
				from := strings.ReplaceAll(layer.from, "FILE", filepath.Join(dir, "config.toml"))
				want := "saga: config: redis.url: " + strconv.Quote(tt.masked) + " is not a Redis URL: " + tt.reason + " (from " + from + ")\n"
				if code != 1 || stdout != "" || stderr != want {
					t.Fatalf("exit %d, stdout %q, stderr\n got %q\nwant %q", code, stdout, stderr, want)
				}
				if strings.Contains(stderr, "hunter2") {
					t.Fatalf("the error shows the password: %q", stderr)
				}
			})
		}
	}
}

// The password of every form the grammar accepts is masked by config show,
// as a table and as JSON, and the URL passes config check.
func TestConfigShowMasksEveryRedisURLForm(t *testing.T) {
	tests := []struct{ name, url, masked string }{
		{"redis user and password", "redis://app:hunter2@10.0.0.1:6379/0", "redis://app:****@10.0.0.1:6379/0"},
		{"redis password only", "redis://:hunter2@10.0.0.1", "redis://:****@10.0.0.1"},
		{"redis lone password", "redis://hunter2@10.0.0.1:6379", "redis://****@10.0.0.1:6379"},
		{"redis password with / and @", "redis://app:hun/ter2@x@10.0.0.1:6379/1", "redis://app:****@10.0.0.1:6379/1"},
		{"rediss", "rediss://app:hunter2@cache.example:6380/2", "rediss://app:****@cache.example:6380/2"},
		{"sentinel", "redis-sentinel://hunter2@h1:26379,h2:26379,h3:26379/mymaster", "redis-sentinel://****@h1:26379,h2:26379,h3:26379/mymaster"},
		{"cluster", "redis-cluster://app:hunter2@h1:6379,h2:6379,h3:6379", "redis-cluster://app:****@h1:6379,h2:6379,h3:6379"},
		{"cluster without password", "redis-cluster://h1:6379,h2:6379", "redis-cluster://h1:6379,h2:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir, "REDIS_URL": tt.url}
			if _, stderr, code := runInProcess(t, env, "config", "check"); code != 0 {
				t.Fatalf("config check: exit %d, %s", code, stderr)
			}
			table, stderr, code := runInProcess(t, env, "config", "show")
			if code != 0 {
				t.Fatalf("config show: exit %d, %s", code, stderr)
			}
			if !regexp.MustCompile(`(?m)^redis\.url +` + regexp.QuoteMeta(tt.masked) + ` +environment REDIS_URL$`).MatchString(table) {
				t.Errorf("table lacks redis.url %s from REDIS_URL:\n%s", tt.masked, table)
			}
			stdout, _, _ := runInProcess(t, env, "config", "show", "-o", "json")
			for _, out := range []string{table, stdout} {
				if strings.Contains(out, "hunter2") || strings.Contains(out, "hun/") {
					t.Fatalf("config show shows the password:\n%s", out)
				}
			}
			if !strings.Contains(stdout, strconv.Quote(tt.masked)) {
				t.Errorf("JSON lacks %q:\n%s", tt.masked, stdout)
			}
		})
	}
}

// RUST_LOG, as the old deployment guide sets it, is read as log.level, and
// one Saga cannot read fails config check naming it.
func TestConfigRustLog(t *testing.T) {
	dir := t.TempDir()
	for value, want := range map[string]string{"saga=debug": "debug", "trace": "debug", "info": "info", "saga=warn": "warn", "saga=debug,hyper=info": "debug"} {
		env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir, "RUST_LOG": value}
		table, stderr, code := runInProcess(t, env, "config", "show")
		if code != 0 || !regexp.MustCompile(`(?m)^log\.level +`+want+` +environment RUST_LOG$`).MatchString(table) {
			t.Errorf("RUST_LOG=%s: exit %d, stderr %q, want log.level %s from RUST_LOG in\n%s", value, code, stderr, want, table)
		}
	}
	env := map[string]string{"HOME": dir, "SAGA_CONFIG_DIR": dir, "RUST_LOG": "saga=loud"}
	stdout, stderr, code := runInProcess(t, env, "config", "check")
	want := `saga: config: log.level: "saga=loud" is not a RUST_LOG filter Saga reads: directive "saga=loud": "loud" is not a level (trace, debug, info, warn, error, off) (from environment RUST_LOG)` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Fatalf("RUST_LOG=saga=loud: exit %d, stdout %q, stderr\n got %q\nwant %q", code, stdout, stderr, want)
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
