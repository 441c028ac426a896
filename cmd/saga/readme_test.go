package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeExamples runs every shell example of README.md, in order,
// against a real saga, so the README cannot drift from what Saga does.
// `make` lines are the set-up commands and are run by CI itself.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	commands := shellExamples(string(readme))
	if len(commands) < 10 {
		t.Fatalf("found only %d shell examples in README.md; did the parser break?", len(commands))
	}

	env := sagaEnv(t)
	server := startSaga(t, env, "serve", "--port", "0", "--data-dir", t.TempDir())
	base := "http://" + server.addr
	clientEnv := append(sagaEnv(t), "SAGA_ADDR="+base)

	ran := 0
	for _, line := range commands {
		args := splitShellWords(t, line)
		switch args[0] {
		case "make":
			continue
		case "curl":
			runReadmeCurl(t, base, line, args[1:])
		case "saga":
			runReadmeSaga(t, clientEnv, line, args[1:])
		default:
			t.Errorf("README example %q: no way to check a %q command; teach this test", line, args[0])
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no README example was run")
	}
}

// shellExamples returns the commands of README's ```sh blocks, with
// backslash continuations joined and comments removed.
func shellExamples(markdown string) []string {
	var commands []string
	inBlock := false
	pending := ""
	scanner := bufio.NewScanner(strings.NewReader(markdown))
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
			continue
		case strings.HasPrefix(line, "```"):
			inBlock = false
			continue
		case !inBlock:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = strings.TrimSpace(pending + line)
		pending = ""
		if line != "" {
			commands = append(commands, line)
		}
	}
	return commands
}

// splitShellWords splits a command line into words, honouring single and
// double quotes (all that the README uses).
func splitShellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("README example %q: unbalanced quote", line)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// runReadmeCurl performs a README curl command with net/http (curl itself
// need not be installed) and checks that it succeeds.
func runReadmeCurl(t *testing.T, base, line string, args []string) {
	t.Helper()
	method, body, url, streaming := "GET", "", "", false
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-s":
		case "-sN", "-N":
			streaming = true
		case "-X":
			i++
			method = args[i]
		case "-d":
			i++
			body = args[i]
			if method == "GET" {
				method = "POST"
			}
		default:
			if strings.HasPrefix(args[i], "-") {
				t.Fatalf("README example %q: curl option %s is not understood by this test", line, args[i])
			}
			url = args[i]
		}
	}
	const documented = "http://127.0.0.1:8030"
	if !strings.HasPrefix(url, documented) {
		t.Fatalf("README example %q: URL does not start with %s", line, documented)
	}
	url = base + strings.TrimPrefix(url, documented)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("README example %q: %v", line, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("README example %q: status %d: %s", line, resp.StatusCode, data)
	}
	if streaming {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("README example %q: Content-Type %q, want an event stream", line, ct)
		}
		return
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("README example %q: %v", line, err)
	}
	// The tour registers web-1; every lookup of web after that must show it.
	if method == "GET" && strings.Contains(url, "/services/web?") && !strings.Contains(string(data), `"web-1"`) {
		t.Errorf("README example %q: answer does not list web-1: %s", line, data)
	}
}

// runReadmeSaga runs a README saga command against the server. Commands
// that run until interrupted (--keepalive, --watch) must still be running
// after a moment and then exit 0 on SIGINT.
func runReadmeSaga(t *testing.T, env []string, line string, args []string) {
	t.Helper()
	longRunning := false
	for _, a := range args {
		if a == "--keepalive" || a == "--watch" {
			longRunning = true
		}
	}
	if !longRunning {
		stdout, stderr, code := runSaga(t, env, args...)
		if code != 0 {
			t.Errorf("README example %q: exit status %d: %s%s", line, code, stdout, stderr)
		}
		return
	}
	p := launchSaga(t, env, args...)
	select {
	case <-p.exited:
		t.Fatalf("README example %q exited early: %v\n%s", line, p.err, p.logs)
	case <-time.After(1500 * time.Millisecond):
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("README example %q: exit status %d after SIGINT\n%s", line, code, p.logs)
	}
}
