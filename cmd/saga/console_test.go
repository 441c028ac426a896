package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The web console (SPEC §9), driven in Debian's headless chromium against
// the real binary. One browser serves the whole package: each test opens
// its own tab.

// browserState is the package's browser, started on first use and closed
// by TestMain.
var browserState struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

// browser returns the context of the package's browser.
func browser(t *testing.T) context.Context {
	t.Helper()
	b := &browserState
	b.once.Do(func() {
		path, err := exec.LookPath("chromium")
		if err != nil {
			b.err = fmt.Errorf("the console tests drive chromium, which is not installed: run `make test-deps` (%w)", err)
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900))
		if os.Geteuid() == 0 {
			opts = append(opts, chromedp.NoSandbox) // chromium refuses to run its sandbox as root
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(alloc)
		if err := chromedp.Do(ctx); err != nil {
			cancel()
			cancelAlloc()
			b.err = fmt.Errorf("start chromium: %w", err)
			return
		}
		b.ctx, b.cancel = ctx, func() { cancel(); cancelAlloc() }
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.ctx
}

// closeBrowser ends the package's browser, if it was started.
func closeBrowser() {
	if browserState.cancel != nil {
		browserState.cancel()
	}
}

// page is one tab on the console. It records what the page writes to the
// console and every request it sends; at the end of the test, an error
// there or a request to another host fails the test.
type page struct {
	t    *testing.T
	ctx  context.Context
	host string // host:port of the saga under test: the only one to talk to

	mu       sync.Mutex
	errors   []string
	requests []string
	allowed  []string // console errors expected by the test (a 401 before signing in)
}

func openConsole(t *testing.T, host string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser(t))
	t.Cleanup(cancel)
	pg := &page{t: t, ctx: ctx, host: host}
	err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			pg.mu.Lock()
			pg.requests = append(pg.requests, ev.Request.URL)
			pg.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				pg.mu.Lock()
				pg.errors = append(pg.errors, m.String())
				pg.mu.Unlock()
			}
		}
	}()
	t.Cleanup(pg.checkClean)
	return pg
}

// allow lets console errors that contain text pass (the browser logs every
// 401 and 403 the page is answered).
func (pg *page) allow(text string) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	pg.allowed = append(pg.allowed, text)
}

func (pg *page) checkClean() {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	for _, msg := range pg.errors {
		if !slices.ContainsFunc(pg.allowed, func(a string) bool { return strings.Contains(msg, a) }) {
			pg.t.Errorf("the page wrote to the console: %s", msg)
		}
	}
	if len(pg.requests) == 0 {
		pg.t.Error("no request of the page was seen")
	}
	for _, raw := range pg.requests {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host != pg.host {
			pg.t.Errorf("the page sent a request elsewhere than %s: %s", pg.host, raw)
		}
	}
}

// do runs actions with a timeout, so that a stuck page fails the test
// rather than hanging it.
func (pg *page) do(actions ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		pg.t.Fatalf("browser: %v\npage text:\n%s", err, pg.text())
	}
}

// eval runs expression in the page and decodes its value into out.
func (pg *page) eval(expression string, out any) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 20*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expression, chromedp.EvalAwaitPromise))
	if err != nil {
		pg.t.Fatalf("evaluate %s: %v", expression, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			pg.t.Fatalf("evaluate %s: decode %s: %v", expression, raw, err)
		}
	}
}

// waitFor waits until expression is true in the page.
func (pg *page) waitFor(what, expression string, timeout time.Duration) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expression,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		pg.t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expression, err, pg.text())
	}
}

// text is what the page shows, for failure messages.
func (pg *page) text() string {
	ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// screenshot writes the whole page at a width to $SAGA_SCREENSHOTS/name.png
// (`make test` sets it to docs/ui), else to a temp dir.
func (pg *page) screenshot(name string, width, height int64) {
	pg.t.Helper()
	dir := os.Getenv("SAGA_SCREENSHOTS")
	if dir == "" {
		dir = pg.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		pg.t.Fatal(err)
	}
	var opts []chromedp.EmulateViewportOption
	if width < 600 {
		opts = append(opts, chromedp.EmulateMobile)
	}
	pg.do(chromedp.EmulateViewport(width, height, opts...))
	pg.eval(`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, nil)
	ctx, cancel := context.WithTimeout(pg.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		pg.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		pg.t.Fatal(err)
	}
}

// axeViolation is one failed rule of axe-core.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkAccessibility runs axe-core (from npm, installed by `make test-deps`)
// on what the page shows: WCAG 2.1 A and AA, and axe's best practices.
func (pg *page) checkAccessibility(where string) {
	pg.t.Helper()
	var loaded bool
	pg.eval(`typeof window.axe === "object"`, &loaded)
	if !loaded {
		src, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
		if err != nil {
			pg.t.Fatalf("axe-core is not installed: run `make test-deps` (npm ci in cmd/saga/testdata/axe): %v", err)
		}
		pg.eval(string(src)+"\n;true", nil)
	}
	var violations []axeViolation
	pg.eval(`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
		.then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))})))`, &violations)
	for _, v := range violations {
		pg.t.Errorf("accessibility (%s): %s [%s, %s] at %s", where, v.Help, v.ID, v.Impact, strings.Join(v.Nodes, "; "))
	}
}

// apiCall sends a request to the saga with an optional bearer token and
// JSON body, and returns the status.
func apiCall(t *testing.T, method, target, token string, body any) int {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func register(t *testing.T, p *sagaProcess, token, service string, instance map[string]any) {
	t.Helper()
	if code := apiCall(t, http.MethodPost, p.url("/api/v1/services/"+service+"/instances"), token, instance); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("register %s/%v: %d", service, instance["id"], code)
	}
}

// consoleEnv is a saga environment without rate limits: the tests
// register many instances from one address.
func consoleEnv(t *testing.T, extra ...string) []string {
	return sagaEnv(t, append([]string{"SAGA_DATA_DIR=" + t.TempDir(), "SAGA_LIMITS_READ_RATE=0", "SAGA_LIMITS_WRITE_RATE=0"}, extra...)...)
}

// serviceRow is the catalogue's row of a service, as the page shows it.
func serviceRow(name string) string {
	return fmt.Sprintf(`document.querySelector('#services tr[data-name=%q]')`, name)
}

func instanceRow(id string) string {
	return fmt.Sprintf(`document.querySelector('.instances tr[data-id=%q]')`, id)
}

func TestConsoleFollowsTheRegistryLive(t *testing.T) {
	p := startSaga(t, consoleEnv(t), "serve", "--port", "0")
	register(t, p, "", "web", map[string]any{"id": "web-1", "address": "10.0.0.11", "port": 8080,
		"tags": []string{"v2", "blue"}, "metadata": map[string]string{"zone": "eu-west-1a", "build": "4f2c1e9"}})
	register(t, p, "", "db", map[string]any{"id": "db-1", "address": "10.0.1.5", "port": 5432, "tags": []string{"primary"}})
	register(t, p, "", "cache", map[string]any{"id": "cache-1", "address": "10.0.2.7", "port": 6379})

	pg := openConsole(t, p.addr)
	pg.do(chromedp.Navigate(p.url("/ui/")))
	pg.waitFor("the catalogue", serviceRow("web")+` && `+serviceRow("db")+` && `+serviceRow("cache"), 10*time.Second)
	pg.waitFor("the live stream", `document.getElementById('live').textContent === 'Live'`, 10*time.Second)
	pg.checkKeyboard()
	pg.eval(`window.notReloaded = true`, nil) // gone should the page reload

	// A new instance shows up without a reload.
	register(t, p, "", "web", map[string]any{"id": "web-2", "address": "10.0.0.12", "port": 8080,
		"tags": []string{"v2", "green"}, "metadata": map[string]string{"zone": "eu-west-1b"}})
	pg.waitFor("web's two instances", serviceRow("web")+`.querySelector('td').textContent === '2'`, 5*time.Second)
	pg.waitFor("the registration in the feed", `document.getElementById('feed').textContent.includes('web-2')`, 5*time.Second)

	// Search narrows the catalogue.
	pg.do(chromedp.SendKeys(chromedp.ID("search"), "we"))
	pg.waitFor("only web shown", `[...document.querySelectorAll('#services tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name).join() === 'web'`, 5*time.Second)
	pg.do(chromedp.SendKeys(chromedp.ID("search"), "zz"))
	pg.waitFor("no match", `!document.getElementById('no-match').hidden && document.getElementById('no-match').textContent.includes('wezz')`, 5*time.Second)
	pg.eval(`(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); return true })()`, nil)
	pg.checkAccessibility("catalogue")

	// The service page: an instance with a short TTL appears, counts down,
	// expires and goes; the feed lists the expiry.
	pg.do(chromedp.Click(chromedp.CSS(`#services a[href="#/services/web"]`)))
	pg.waitFor("web's instances", instanceRow("web-1")+` && `+instanceRow("web-2"), 5*time.Second)
	register(t, p, "", "web", map[string]any{"id": "web-3", "address": "10.0.0.13", "port": 8080, "ttl_seconds": 3})
	pg.waitFor("web-3", instanceRow("web-3"), 5*time.Second)
	pg.waitFor("web-3's countdown", instanceRow("web-3")+`.querySelector('.expires').textContent.endsWith(' s')`, 3*time.Second)
	pg.waitFor("web-3 gone", `!`+instanceRow("web-3"), 10*time.Second)
	pg.waitFor("the expiry in the feed", `[...document.querySelectorAll('#feed li')].some(li => li.textContent.includes('expired') && li.textContent.includes('web-3'))`, 5*time.Second)

	// An instance turned critical shows it.
	if code := apiCall(t, http.MethodPut, p.url("/api/v1/services/web/instances/web-1/heartbeat"), "", map[string]string{"status": "critical"}); code != http.StatusOK {
		t.Fatalf("heartbeat: %d", code)
	}
	pg.waitFor("web-1 critical", instanceRow("web-1")+`.querySelector('.status').textContent === 'critical'`, 5*time.Second)
	pg.waitFor("the summary", `document.getElementById('summary').textContent.includes('1 critical')`, 5*time.Second)
	pg.checkAccessibility("service page")

	pg.screenshot("service-desktop", 1920, 1080)
	pg.screenshot("service-phone", 375, 812)
	pg.do(chromedp.Click(chromedp.CSS(`nav a[href="#/"]`)))
	pg.waitFor("the catalogue", serviceRow("web"), 5*time.Second)
	pg.screenshot("catalogue-phone", 375, 812)
	pg.screenshot("catalogue-desktop", 1920, 1080)

	// The health report, with the cache figures.
	pg.do(chromedp.Click(chromedp.CSS(`nav a[href="#/health"]`)))
	pg.waitFor("the health report", `['Hits', 'Misses', 'Hit ratio', 'Last refresh'].every(k => [...document.querySelectorAll('#health dt')].some(dt => dt.textContent === k))`, 5*time.Second)
	pg.checkAccessibility("health")

	var kept bool
	pg.eval(`window.notReloaded === true`, &kept)
	if !kept {
		t.Error("the page reloaded")
	}
}

// checkKeyboard tabs through the catalogue from the top of a page just
// loaded: the skip link comes first, the search and a service's link are
// reachable, and the focused control shows it.
func (pg *page) checkKeyboard() {
	pg.t.Helper()
	var reached []string
	for range 12 {
		pg.do(chromedp.KeyEvent(kb.Tab))
		var focus struct {
			Tag, ID, Href, Outline string
		}
		pg.eval(`(() => { const e = document.activeElement; return {Tag: e.tagName, ID: e.id, Href: e.getAttribute('href') || '', Outline: getComputedStyle(e).outlineStyle} })()`, &focus)
		if focus.Tag == "BODY" {
			continue // past the last control: the focus left the page
		}
		if focus.Outline == "none" {
			pg.t.Errorf("the focused control %+v shows no outline", focus)
		}
		reached = append(reached, focus.ID+focus.Href)
	}
	if len(reached) == 0 || reached[0] != "#main" {
		pg.t.Errorf("the first Tab does not reach the skip link; it went through %v", reached)
	}
	for _, want := range []string{"search", "#/services/cache", "#/health"} {
		if !slices.Contains(reached, want) {
			pg.t.Errorf("Tab does not reach %s; it went through %v", want, reached)
		}
	}
}

func TestConsoleSignsInWithAToken(t *testing.T) {
	p := startSaga(t, consoleEnv(t, "SAGA_AUTH_ENABLED=true"), "serve", "--port", "0")
	_, admin := newToken(t, p, "", "bootstrap")
	_, reader := newToken(t, p, admin, "create", "--role", "read", "--description", "console")
	register(t, p, admin, "web", map[string]any{"id": "web-1", "address": "10.0.0.11", "port": 8080})

	pg := openConsole(t, p.addr)
	pg.allow("401 (Unauthorized)")
	pg.do(chromedp.Navigate(p.url("/ui/")))
	pg.waitFor("the sign-in form", `document.getElementById('token') !== null`, 10*time.Second)
	pg.checkAccessibility("sign-in")

	pg.do(chromedp.SendKeys(chromedp.ID("token"), "saga_not-a-token\n"))
	pg.waitFor("the refusal", `document.getElementById('login-error').textContent.includes('not accepted')`, 5*time.Second)

	pg.eval(`document.getElementById('token').value = ''`, nil)
	pg.do(chromedp.SendKeys(chromedp.ID("token"), reader+"\n"))
	pg.waitFor("the catalogue", serviceRow("web"), 10*time.Second)
	pg.waitFor("the live stream", `document.getElementById('live').textContent === 'Live'`, 10*time.Second)

	// The stream, read with the token, brings the next registration.
	register(t, p, admin, "db", map[string]any{"id": "db-1", "address": "10.0.1.5", "port": 5432})
	pg.waitFor("db", serviceRow("db"), 5*time.Second)

	// The token is typed once: a reload keeps it (session storage).
	pg.do(chromedp.Reload())
	pg.waitFor("the catalogue after a reload", serviceRow("db"), 10*time.Second)
	var signIn bool
	pg.eval(`document.getElementById('token') !== null`, &signIn)
	if signIn {
		t.Error("the page asked for the token again after a reload")
	}

	pg.do(chromedp.Click(chromedp.ID("signout")))
	pg.waitFor("the sign-in form", `document.getElementById('token') !== null`, 5*time.Second)
	var stored string
	pg.eval(`sessionStorage.getItem('saga.token') || ''`, &stored)
	if stored != "" {
		t.Error("signing out left the token in session storage")
	}
}

// TestConsoleExplainsProtectedMode opens the console from another address
// of this machine: with auth off, Saga refuses it the API and the page
// says why.
func TestConsoleExplainsProtectedMode(t *testing.T) {
	ip := nonLoopbackIP(t)
	p := startSaga(t, consoleEnv(t), "serve", "--port", "0", "--host", "0.0.0.0")
	_, port, _ := net.SplitHostPort(p.addr)
	host := net.JoinHostPort(ip, port)

	pg := openConsole(t, host)
	pg.allow("403 (Forbidden)")
	pg.do(chromedp.Navigate("http://" + host + "/ui/"))
	pg.waitFor("the explanation", `document.querySelector('main h1').textContent === 'Saga is in protected mode'`, 10*time.Second)
	text := pg.text()
	for _, want := range []string{"auth.enabled", "server.protected_mode"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not name %s:\n%s", want, text)
		}
	}
	pg.checkAccessibility("protected mode")
}

// nonLoopbackIP is an IPv4 address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no address but loopback: protected mode cannot be seen from it")
	return ""
}

func TestConsoleOverTLS(t *testing.T) {
	s := newTLSSetup(t)
	p := startSaga(t, consoleEnv(t, "SAGA_SERVER_TLS_CERT_FILE="+s.certFile, "SAGA_SERVER_TLS_KEY_FILE="+s.keyFile), "serve", "--port", "0")
	pg := openConsole(t, p.addr)
	// The test's CA is not the browser's: this tab trusts any certificate.
	ctx, cancel := context.WithTimeout(pg.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, security.SetIgnoreCertificateErrors, security.SetIgnoreCertificateErrorsParams{Ignore: true}); err != nil {
		t.Fatal(err)
	}
	client := s.httpsClient(false)
	req, _ := http.NewRequest(http.MethodPost, "https://"+p.addr+"/api/v1/services/web/instances", strings.NewReader(`{"id":"web-1","address":"10.0.0.11","port":8080}`))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	pg.do(chromedp.Navigate("https://" + p.addr + "/ui/"))
	pg.waitFor("the catalogue", serviceRow("web"), 10*time.Second)
	pg.waitFor("the live stream", `document.getElementById('live').textContent === 'Live'`, 10*time.Second)
	req, _ = http.NewRequest(http.MethodPost, "https://"+p.addr+"/api/v1/services/db/instances", strings.NewReader(`{"id":"db-1","address":"10.0.1.5","port":5432}`))
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pg.waitFor("db", serviceRow("db"), 5*time.Second)
}

func TestConsoleOff(t *testing.T) {
	p := startSaga(t, consoleEnv(t, "SAGA_UI_ENABLED=false"), "serve", "--port", "0")
	if code := apiCall(t, http.MethodGet, p.url("/ui/"), "", nil); code != http.StatusNotFound {
		t.Errorf("GET /ui/ with ui.enabled = false: %d, want 404", code)
	}
}

// TestConsoleCatalogueLoad measures how long the catalogue of 1,000
// services takes to show, in the headless browser (docs/performance.md).
// It reports the figures; it does not assert them: timing depends on the
// machine.
func TestConsoleCatalogueLoad(t *testing.T) {
	const services = 1000
	p := startSaga(t, consoleEnv(t), "serve", "--port", "0")
	for i := range services {
		register(t, p, "", fmt.Sprintf("svc-%04d", i), map[string]any{"id": "i-1", "address": "10.1.0.1", "port": 8000 + i})
	}

	pg := openConsole(t, p.addr)
	const loads = 6 // the first warms the browser's cache and is not counted
	var shown, loaded, fetched []float64
	for i := range loads {
		pg.do(chromedp.Navigate(p.url("/ui/")))
		pg.waitFor("the catalogue", fmt.Sprintf(`document.querySelectorAll('#services tbody tr').length === %d && performance.getEntriesByName('saga-catalogue').length === 1`, services), 20*time.Second)
		var timing struct{ Shown, Load, Fetched float64 }
		pg.waitFor("the load event", `performance.getEntriesByType('navigation')[0].loadEventEnd > 0`, 10*time.Second)
		pg.eval(`({Shown: performance.getEntriesByName('saga-catalogue')[0].startTime,
			Load: performance.getEntriesByType('navigation')[0].loadEventEnd,
			Fetched: performance.getEntriesByType('resource').find(e => e.name.endsWith('/api/v1/services')).responseEnd})`, &timing)
		if i > 0 {
			shown, loaded, fetched = append(shown, timing.Shown), append(loaded, timing.Load), append(fetched, timing.Fetched)
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	t.Logf("catalogue of %d services in headless chromium, %d loads (ms after navigation start): "+
		"shown %.0f median (%.0f–%.0f), catalogue fetched %.0f, load event %.0f",
		services, len(shown), median(shown), slices.Min(shown), slices.Max(shown), median(fetched), median(loaded))
}
