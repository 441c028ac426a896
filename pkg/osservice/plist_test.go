package osservice

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func agentPlist() Plist {
	return Plist{
		Label:            "saga",
		Command:          Command{Executable: "/usr/local/bin/saga", Args: []string{"serve", "--port", "9000"}},
		Environment:      []EnvVar{{"REDIS_URL", "redis://u:p&q@host:6379/0"}, {"LOG_LEVEL", "debug"}},
		WorkingDirectory: "/Users/ann",
		LogDir:           "/Users/ann/.saga/logs",
	}
}

func TestPlistGolden(t *testing.T) {
	agent, err := LaunchdPlist(agentPlist())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "agent.plist", agent)
	daemon, err := LaunchdPlist(plistFor(Options{Name: "saga", Command: Command{Executable: "/usr/local/bin/saga", Args: []string{"serve"}}}))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "daemon.plist", daemon)
}

// TestPlistParses reads the rendered plist with Python's plistlib, a real
// property-list parser, and checks what launchd will see.
func TestPlistParses(t *testing.T) {
	python := requireTool(t, "python3")
	text, err := LaunchdPlist(agentPlist())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "saga.plist")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c",
		"import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))", path).CombinedOutput()
	if err != nil {
		t.Fatalf("plistlib rejects the plist: %v\n%s\n%s", err, out, text)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Label":                "saga",
		"ProgramArguments":     []any{"/usr/local/bin/saga", "serve", "--port", "9000"},
		"EnvironmentVariables": map[string]any{"REDIS_URL": "redis://u:p&q@host:6379/0", "LOG_LEVEL": "debug"},
		"WorkingDirectory":     "/Users/ann",
		"RunAtLoad":            true,
		"KeepAlive":            map[string]any{"SuccessfulExit": false},
		"ThrottleInterval":     float64(2),
		"ProcessType":          "Background",
		"StandardOutPath":      "/Users/ann/.saga/logs/saga.out.log",
		"StandardErrorPath":    "/Users/ann/.saga/logs/saga.err.log",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plist reads as\n%v\nwant\n%v", got, want)
	}
}

func TestPlistLogsWhereTheSpecSays(t *testing.T) {
	cmd := Command{Executable: "/usr/local/bin/saga", Args: []string{"serve"}}
	if got := plistFor(Options{Name: "saga", User: true, Home: "/Users/ann", Command: cmd}).LogDir; got != "/Users/ann/.saga/logs" {
		t.Errorf("agent logs in %s; want ~/.saga/logs", got)
	}
	if got := plistFor(Options{Name: "saga", Command: cmd}).LogDir; got != "/var/log/saga" {
		t.Errorf("daemon logs in %s; want /var/log/saga", got)
	}
}
