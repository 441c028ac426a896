package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docExample is one "$ saga …" line of a console block in docs/cli.md.
type docExample struct {
	line     int
	args     []string
	wantExit int // "# exit N" after the command; 0 when absent
}

// TestCLIDocExamples runs every command of docs/cli.md's console examples,
// in order, against one server, so the page cannot drift from the code.
func TestCLIDocExamples(t *testing.T) {
	examples := readDocExamples(t, filepath.Join("..", "..", "docs", "cli.md"))
	if len(examples) < 15 {
		t.Fatalf("found %d examples in docs/cli.md; the parser has lost them", len(examples))
	}
	cli := newClientCLI(t)
	for _, ex := range examples {
		if ready := runsUntilInterrupted(ex.args); ready != "" {
			out, errOut, stop := cli.start(ex.args...)
			if ready == "stdout" {
				waitForOutput(t, out, "\n")
			} else {
				waitForOutput(t, errOut, ready)
			}
			if code := stop(); code != 0 {
				t.Errorf("docs/cli.md:%d: saga %s exited %d: %s", ex.line, strings.Join(ex.args, " "), code, errOut.String())
			}
			continue
		}
		_, errOut, code := cli.run(ex.args...)
		if code != ex.wantExit {
			t.Errorf("docs/cli.md:%d: saga %s exited %d, the page says %d: %s", ex.line, strings.Join(ex.args, " "), code, ex.wantExit, errOut)
		}
	}
}

// runsUntilInterrupted says what a long-running example prints once it is
// under way ("" for the commands that end by themselves).
func runsUntilInterrupted(args []string) string {
	joined := " " + strings.Join(args, " ") + " "
	switch {
	case strings.Contains(joined, " --keepalive "):
		return "saga: keeping "
	case strings.Contains(joined, " --watch "):
		return "stdout"
	case args[0] == "watch":
		return "saga: following the events of "
	}
	return ""
}

func readDocExamples(t *testing.T, path string) []docExample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var examples []docExample
	inConsole := false
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "```console"):
			inConsole = true
		case strings.HasPrefix(line, "```"):
			inConsole = false
		case inConsole && strings.HasPrefix(line, "$ saga "):
			cmd, comment, _ := strings.Cut(strings.TrimPrefix(line, "$ saga "), "#")
			ex := docExample{line: n, args: strings.Fields(cmd)}
			if code, ok := strings.CutPrefix(strings.TrimSpace(comment), "exit "); ok {
				ex.wantExit = int(code[0] - '0')
			}
			examples = append(examples, ex)
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return examples
}
