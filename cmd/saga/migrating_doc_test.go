package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sagaproject/saga/pkg/config"
	"github.com/sagaproject/saga/pkg/osservice"
)

// repoRoot is the repository's top directory, seen from this package.
const repoRoot = "../.."

// migrationRow is one row of a table in docs/migrating.md whose first two
// columns are "old guide" and "now".
type migrationRow struct {
	line     int
	old, now string
}

// The old deployment guide's commands, paths, files and variables: each
// must stay in the "old guide" column, so the page keeps covering the
// guide.
var oldGuide = []string{
	"scripts/setup.sh", "infra/compose.yml", "k8s/", "/api/v1/health", "launchd plist", "log files",
	"Prometheus scrape path", "docker build -t saga:latest .", "make saga-watch",
	"make saga-dev", "make saga-build", "make saga-test",
	"REDIS_URL", "PORT", "HOST", "REGISTRATION_TTL", "HEARTBEAT_INTERVAL", "SERVICE_NAME",
	"SAGA_CONFIG_DIR", "LOG_LEVEL", "RUST_LOG",
}

// TestMigratingDoc checks every replacement that docs/migrating.md names
// in its "now" columns against the code: repository files, make targets,
// saga commands and flags, configuration keys and environment variables,
// HTTP routes of a running saga, and the paths saga installs to.
func TestMigratingDoc(t *testing.T) {
	rows := migrationRows(t, filepath.Join(repoRoot, "docs", "migrating.md"))
	if len(rows) < 25 {
		t.Fatalf("found %d rows in docs/migrating.md's tables; has the parser lost them?", len(rows))
	}
	var oldColumn strings.Builder
	for _, r := range rows {
		oldColumn.WriteString(r.old + "\n")
	}
	for _, item := range oldGuide {
		if !strings.Contains(oldColumn.String(), item) {
			t.Errorf("docs/migrating.md: the old guide's %q has no row", item)
		}
	}

	c := newReplacementChecker(t)
	for _, r := range rows {
		spans := codeSpans(r.now)
		if len(spans) == 0 {
			t.Errorf("docs/migrating.md:%d: the row for %s names no replacement in `code`", r.line, r.old)
		}
		for _, span := range spans {
			if err := c.check(t, span); err != "" {
				t.Errorf("docs/migrating.md:%d: %s", r.line, err)
			}
		}
	}
}

// migrationRows returns the rows of every table whose header starts with
// the columns "old guide" and "now".
func migrationRows(t *testing.T, path string) []migrationRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var rows []migrationRow
	inTable := false
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := tableCells(line)
		switch {
		case len(cells) >= 2 && cells[0] == "old guide" && cells[1] == "now":
			inTable = true
		case !inTable || strings.Trim(line, "|-: ") == "":
		case len(cells) < 2:
			t.Errorf("%s:%d: a row with fewer than two columns", path, n)
		default:
			rows = append(rows, migrationRow{line: n, old: cells[0], now: cells[1]})
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// tableCells splits a Markdown table row into its trimmed cells. No cell of
// the page holds a '|'.
func tableCells(line string) []string {
	cells := strings.Split(strings.Trim(line, "|"), "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

func codeSpans(cell string) []string {
	var spans []string
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// replacementChecker knows what exists: the command tree, the Makefile's
// targets, the configuration's keys and variables, a running saga, and
// the paths saga installs to.
type replacementChecker struct {
	root        *cobra.Command
	makeTargets []string
	keys        []string
	envNames    []string
	installed   []string // paths on the machine, "~" for the home directory
	server      *sagaProcess
}

// legacyServiceName is given to the running saga through the old guide's
// SERVICE_NAME, which its health report must name.
const legacyServiceName = "registry-from-the-old-guide"

func newReplacementChecker(t *testing.T) *replacementChecker {
	t.Helper()
	c := &replacementChecker{
		root: newRootCmd(&app{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}),
		keys: config.Keys(),
	}
	for _, k := range c.keys {
		c.envNames = append(c.envNames, config.EnvNames(k)...)
	}
	// SAGA_CONFIG_DIR is no key: it says where the file of keys is.
	if path, _ := config.FilePath(config.Options{Getenv: func(k string) string {
		return map[string]string{"SAGA_CONFIG_DIR": "/srv/saga", "HOME": "/home/ann"}[k]
	}}); path == "/srv/saga/config.toml" {
		c.envNames = append(c.envNames, "SAGA_CONFIG_DIR")
	}

	const home = "/home/ann"
	userFile, _ := config.FilePath(config.Options{Getenv: func(k string) string { return map[string]string{"HOME": home}[k] }})
	for _, p := range []string{
		config.SystemFile,
		userFile,
		filepath.Join(osservice.SystemBinDir, "saga"),
		filepath.Join(osservice.UserBinDir(home), "saga"),
		osservice.DefaultExecutable,
	} {
		if rest, ok := strings.CutPrefix(p, home+"/"); ok {
			p = "~/" + rest
		}
		c.installed = append(c.installed, p)
	}

	makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	target := regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?:[^=]|$)`)
	for _, m := range target.FindAllStringSubmatch(string(makefile), -1) {
		c.makeTargets = append(c.makeTargets, strings.Fields(m[1])...)
	}

	c.server = startSaga(t, sagaEnv(t, "SERVICE_NAME="+legacyServiceName), "serve", "--port", "0", "--data-dir", t.TempDir())
	return c
}

var (
	httpRoute = regexp.MustCompile(`^(GET|HEAD|POST|PUT|DELETE) (/\S*)$`)
	envName   = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
)

// check returns what is wrong with one replacement, or "".
func (c *replacementChecker) check(t *testing.T, span string) string {
	t.Helper()
	switch {
	case strings.HasPrefix(span, "saga ") || span == "saga":
		return c.checkCommand(splitShellWords(t, span)[1:])
	case strings.HasPrefix(span, "make "):
		for _, word := range strings.Fields(span)[1:] {
			if !strings.HasPrefix(word, "-") && !strings.Contains(word, "=") && !slices.Contains(c.makeTargets, word) {
				return "the Makefile has no target " + word
			}
		}
		return ""
	case strings.HasPrefix(span, "docker build ") || strings.HasPrefix(span, "podman build "):
		return checkImageBuild(splitShellWords(t, span)[2:])
	case httpRoute.MatchString(span):
		m := httpRoute.FindStringSubmatch(span)
		return c.checkRoute(t, m[1], m[2])
	case strings.HasPrefix(span, "/") || strings.HasPrefix(span, "~/"):
		if !slices.Contains(c.installed, span) {
			return span + " is none of the paths saga installs to or reads: " + strings.Join(c.installed, ", ")
		}
		return ""
	case envName.MatchString(span):
		if !slices.Contains(c.envNames, span) {
			return "the configuration reads no variable " + span
		}
		return ""
	case slices.Contains(c.keys, span):
		return ""
	}
	if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(span))); err != nil {
		return "`" + span + "` is no file of the repository, configuration key, variable, command, target, route or installed path"
	}
	return ""
}

// checkCommand walks `saga args...` down the command tree: every word is a
// subcommand, a flag of the command reached, or an argument it accepts.
func (c *replacementChecker) checkCommand(args []string) string {
	cmd := c.root
	var positional []string
	line := "saga " + strings.Join(args, " ")
	for i := 0; i < len(args); i++ {
		word := args[i]
		if strings.HasPrefix(word, "-") {
			name, _, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
			flag := cmd.Flags().Lookup(name)
			if flag == nil {
				flag = cmd.InheritedFlags().Lookup(name)
			}
			if flag == nil && !strings.HasPrefix(word, "--") {
				if flag = cmd.Flags().ShorthandLookup(name); flag == nil {
					flag = cmd.InheritedFlags().ShorthandLookup(name)
				}
			}
			if flag == nil {
				return line + ": " + cmd.CommandPath() + " has no flag " + word
			}
			if !hasValue && flag.Value.Type() != "bool" && i+1 < len(args) {
				i++ // the flag's value
			}
			continue
		}
		if len(positional) == 0 {
			if sub, _, err := cmd.Find([]string{word}); err == nil && sub != cmd {
				if sub.Deprecated != "" || sub.Hidden {
					return line + ": " + sub.CommandPath() + " is hidden or deprecated"
				}
				cmd = sub
				continue
			}
		}
		positional = append(positional, word)
	}
	if err := cmd.ValidateArgs(positional); err != nil {
		return line + ": " + cmd.CommandPath() + ": " + err.Error()
	}
	return ""
}

// checkRoute asks the running saga: a route that exists answers anything
// but 404 and 405.
func (c *replacementChecker) checkRoute(t *testing.T, method, path string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, c.server.url(path), nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return method + " " + path + ": " + err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return method + " " + path + " answers " + resp.Status + ": no such route"
	case path == "/api/v1/health" && !strings.Contains(string(body), `"service":"`+legacyServiceName+`"`):
		return "the health report does not name the SERVICE_NAME it was given: " + string(body)
	}
	return ""
}

// checkImageBuild checks `docker build` arguments: the context's
// Dockerfile (or -f's) exists and compiles saga from source, so the command
// works in a clone with nothing else built.
func checkImageBuild(args []string) string {
	context, dockerfile := "", ""
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-f" || args[i] == "--file":
			i++
			if i < len(args) {
				dockerfile = args[i]
			}
		case args[i] == "-t" || args[i] == "--tag" || args[i] == "--format" || args[i] == "--build-arg":
			i++
		case !strings.HasPrefix(args[i], "-"):
			context = args[i]
		}
	}
	if context == "" {
		return "the image build names no context"
	}
	if dockerfile == "" {
		dockerfile = filepath.Join(context, "Dockerfile")
	}
	text, err := os.ReadFile(filepath.Join(repoRoot, dockerfile))
	if err != nil {
		return "the image build has no Dockerfile: " + err.Error()
	}
	if !strings.Contains(string(text), "go build") {
		return dockerfile + " does not build saga from source"
	}
	return ""
}

// TestMigratingDocCatchesDrift feeds the checker replacements that do not
// exist, so a checker that passes everything cannot go unnoticed.
func TestMigratingDocCatchesDrift(t *testing.T) {
	c := newReplacementChecker(t)
	for _, span := range []string{
		"saga setup --bin-dir", "saga serve --port", "make saga-watch", "GET /livez", "REDIS_URL",
		"SAGA_CONFIG_DIR", "registry.ttl", "contrib/kubernetes/", "~/.local/bin/saga", "docker build -t saga:latest .",
	} {
		if err := c.check(t, span); err != "" {
			t.Errorf("%q: %s; want it accepted", span, err)
		}
	}
	for _, span := range []string{
		"saga setup --bin-directory", // no such flag
		"saga sevre",                 // no such command
		"saga version extra",         // an argument version does not take
		"make saga-wach",             // no such target
		"GET /api/v1/healthz",        // no such route
		"SAGA_PORT",                  // no such variable
		"registry.tll",               // no such key, nor file
		"infra/compose.yml",          // gone from the repository
		"/usr/local/sbin/saga",       // not where saga installs
		"docker build -f cmd/saga/main.go .",
	} {
		if err := c.check(t, span); err == "" {
			t.Errorf("%q passed the check; want it refused", span)
		}
	}
}
