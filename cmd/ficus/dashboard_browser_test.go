package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/chromedp"

	"github.com/ficus-project/ficus/facade"
)

// chromiumPath finds the Chromium the browser test drives: $FICUS_CHROMIUM, else chromium
// (Debian's package) or chromium-browser on PATH, else /usr/bin/chromium. Without one the
// test skips with one loud line, and fails instead when FICUS_REQUIRE_CHROMIUM=1 (CI:
// .ci/run installs the package and sets it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("FICUS_CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "NO CHROMIUM: the dashboard's browser test did not run (apt-get install chromium, or set FICUS_CHROMIUM)"
	if os.Getenv("FICUS_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg + "; FICUS_REQUIRE_CHROMIUM=1 makes that a failure")
	}
	fmt.Fprintln(os.Stderr, "SKIP "+t.Name()+": "+msg)
	t.SkipNow()
	return ""
}

// screenshotDir is where the browser test saves its screenshots: artifacts/screenshots at
// the repository's root (git-ignored), made afresh by each run.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "artifacts", "screenshots")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// css is a query option that finds the elements matching the CSS selector sel.
func css(sel string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, dom.QuerySelectorAll, dom.QuerySelectorAllParams{NodeID: n.NodeID, Selector: sel})
		return res.NodeIDs, err
	})
}

// dashboardConfig is the browser test's config.yaml: the shop on the held ports with both
// services, the monolith's inventory module remote (orders are placed by a saga), inventory
// reads shadowed to the service, and the payments route on payTo.
func dashboardConfig(h *heldPorts, payTo string) string {
	return fmt.Sprintf(`facade:
  listen: %[1]s
  admin: { listen: %[2]s, token_env: E2E_TOKEN }
backends:
  monolith: { url: http://%[3]s, timeout: 5s }
  inventory: { url: http://%[4]s, timeout: 2s, dry_run: true }
  payments: { url: http://%[5]s, timeout: 2s, dry_run: true }
routes:
  - name: inventory
    match: { path: /api/inventory }
    to: monolith
    shadow: { to: inventory, methods: [GET], recheck: 100ms }
  - name: payments
    match: { path: /api/payments, methods: [GET, HEAD] }
    to: %[7]s
  - match: { path: / }
    to: monolith
monolith:
  listen: %[3]s
  database: sqlite:data/monolith.db
  modules: { inventory: remote }
services:
  inventory: { listen: %[4]s, database: sqlite:data/inventory.db }
  payments: { listen: %[5]s, database: sqlite:data/payments.db }
events: { bus: embedded, embedded: { listen: %[6]s, store: data/nats } }
`, h.addr("facade"), h.addr("admin"), h.addr("monolith"), h.addr("inventory"), h.addr("payments"), h.addr("bus"), payTo)
}

// TestDashboardInTheBrowser drives the dashboard in headless Chromium against the shop that
// ficus up runs: it signs in, sees every panel fill with live data (traffic, a shadow
// difference, outboxes, order sagas, a data migration), flips the payments route in
// config.yaml and sees the page show the new backend within seconds, opens a diff sample,
// and saves screenshots of the page and of each panel under artifacts/screenshots.
func TestDashboardInTheBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	shots := screenshotDir(t)
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "inventory", "payments", "bus")
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(dashboardConfig(h, "monolith")), 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "dashboard-e2e-token-5678"
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN="+token)
	h.pass(cmd)
	up := startFicus(t, cmd)
	banner := strings.Join(up.out.waitFor(t, "Stop:   Ctrl-C", 60*time.Second), "\n")
	m := regexp.MustCompile(`ada@example\.com\s+(\S+)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no demo customer in the banner:\n%s", banner)
	}
	customer := m[1]
	facadeURL, adminURL := "http://"+h.addr("facade"), "http://"+h.addr("admin")

	// The inventory data migration: copied, an item added on the monolith kept in step by
	// sync, verified.
	migrateInventory := func(args ...string) {
		t.Helper()
		c := exec.Command(ficusBin, append([]string{"migrate", "inventory"}, append(args, "-c", cfgPath)...)...)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("ficus migrate inventory %s: %v\n%s", args[0], err, out)
		}
	}
	migrateInventory("backfill")
	if status, body := httpDo("POST", facadeURL+"/api/inventory/items",
		`{"sku":"DASH-SYNCED","name":"Copied by sync","price_cents":700,"on_hand":5}`); status != 201 {
		t.Fatalf("adding an item: %d %s", status, body)
	}
	migrateInventory("sync", "-until-caught-up", "-deadline", "20s")
	migrateInventory("verify")
	// An item the service has not got (no sync runs any more): the shadow sees it differ.
	if status, body := httpDo("POST", facadeURL+"/api/inventory/items",
		`{"sku":"DASH-NEW","name":"Added after the copy","price_cents":500,"on_hand":3}`); status != 201 {
		t.Fatalf("adding an item: %d %s", status, body)
	}
	// Orders, each placed by a saga: one placed, one the inventory service refuses.
	for i, sku := range []string{"BOOK-GO-1", "DASH-NEW"} {
		req, err := http.NewRequest("POST", facadeURL+"/api/orders",
			strings.NewReader(fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":1}]}`, customer, sku)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("dashboard-e2e-%d", i))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("order of %s: %d %s", sku, resp.StatusCode, body)
	}
	// Live traffic while the browser looks.
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	trafficDone := make(chan struct{})
	t.Cleanup(func() { stopTraffic(); <-trafficDone })
	go func() {
		defer close(trafficDone)
		paths := []string{"/api/inventory/items/MUG-FICUS", "/api/inventory/items/DASH-NEW", "/api/inventory/items/DASH-SYNCED",
			"/api/customers/" + customer, "/api/payments/nope"}
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-trafficCtx.Done():
				return
			case <-tick.C:
				httpDo("GET", facadeURL+paths[i%len(paths)], "")
			}
		}
	}()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1440, 1000))
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser, bound to browser's life
		t.Fatalf("starting %s: %v", chromium, err)
	}
	// step runs actions with a deadline, failing the test with what the page shows.
	step := func(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			text, _ := chromedp.Run(browser, chromedp.Evaluate[string]("document.body.innerText"))
			t.Fatalf("%s: %v\nthe page says:\n%s", what, err, text)
		}
	}
	// until waits for a JavaScript condition on the page.
	until := func(what, expr string, timeout time.Duration) {
		t.Helper()
		step(what, timeout+time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond),
				chromedp.WithPollingTimeout(timeout))(ctx, tg)
			return err
		}))
	}
	text := func(sel string) string {
		return fmt.Sprintf(`(document.querySelector(%q)?.innerText ?? "")`, sel)
	}

	// Sign in: the token goes into the form, then into session storage, never the URL.
	step("loading the sign-in form", 15*time.Second, chromedp.Navigate(adminURL+"/"), chromedp.WaitVisible("", css("#token")))
	step("signing in", 10*time.Second, chromedp.SendKeys("", token, css("#token")), chromedp.Click("", css("#login-form button[type=submit]")),
		chromedp.WaitVisible("", css("#board")))
	until("the token is kept in the session", `sessionStorage.getItem("ficus-admin-token") === `+fmt.Sprintf("%q", token)+
		` && !location.href.includes(`+fmt.Sprintf("%q", token)+`)`, 2*time.Second)

	// Every panel fills with live data.
	until("the routes panel shows the payments route on the monolith",
		text(`tr[data-route="payments"] [data-testid=route-backend]`)+` === "monolith"`, 10*time.Second)
	until("the backends panel shows the monolith's traffic",
		`[...document.querySelectorAll('tr[data-backend="monolith"] td.num')].some(td => parseFloat(td.innerText) > 0)`, 15*time.Second)
	until("the shadow panel shows a difference", `document.querySelectorAll("[data-testid=diff-sample]").length > 0`, 15*time.Second)
	until("the outbox panel lists the three databases",
		`["monolith","inventory","payments"].every(d => document.querySelector('tr[data-database="'+d+'"]'))`, 10*time.Second)
	until("the sagas panel counts the sagas", text("#saga-counts")+`.includes("placed 1")`, 20*time.Second)
	until("the migrations panel shows the verified copy and the sync's lag",
		text(`[data-migration="inventory forward"]`)+`.includes("verify clean") && `+
			text(`[data-migration="inventory forward"]`)+`.includes("lag")`, 10*time.Second)
	// The chart draws lines once the monolith's history has a few points (2s each).
	pollUntil(t, "the monolith's traffic history has three points", 15*time.Second, func() (bool, string) {
		req, _ := http.NewRequest("GET", adminURL+"/api/dashboard", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var d facade.Dashboard
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return false, err.Error()
		}
		for _, b := range d.Backends {
			if b.Name == "monolith" {
				return len(b.History) >= 3, fmt.Sprintf("%d points", len(b.History))
			}
		}
		return false, "no monolith backend"
	})
	until("the page has drawn the history", `document.querySelector("#status").innerText.startsWith("live")`, 3*time.Second)
	step("screenshot of the page", 10*time.Second, save(shots, "dashboard.png", chromedp.FullScreenshot(100)))

	// Flip the payments route in config.yaml: the page shows the new backend within seconds.
	flipped := time.Now()
	if err := os.WriteFile(cfgPath, []byte(dashboardConfig(h, "payments")), 0o644); err != nil {
		t.Fatal(err)
	}
	until("the page shows the payments route on the payments service",
		text(`tr[data-route="payments"] [data-testid=route-backend]`)+` === "payments"`, 10*time.Second)
	t.Logf("the page showed the flipped route %s after the edit", time.Since(flipped).Round(100*time.Millisecond))
	until("the flipped route is flagged as changed", `document.querySelector('tr[data-route="payments"]').classList.contains("changed")`, 5*time.Second)
	until("the backends panel shows the payments service's traffic",
		`[...document.querySelectorAll('tr[data-backend="payments"] td.num')].some(td => parseFloat(td.innerText) > 0)`, 15*time.Second)
	step("screenshot of the flipped route", 10*time.Second, save(shots, "panel-routes.png", chromedp.Screenshot("", css("#panel-routes"))))

	// Open a diff sample: the differences show as diff lines, both answers beside them.
	step("opening a diff sample", 10*time.Second, chromedp.Click("", css("[data-testid=diff-sample]")),
		chromedp.WaitVisible("", css("[data-testid=diff-lines]")))
	until("the diff shows the primary's and the candidate's sides",
		text("[data-testid=diff-lines]")+`.includes("- monolith") && `+text("[data-testid=diff-lines]")+`.includes("+ inventory")`, 5*time.Second)
	for _, panel := range []string{"backends", "shadow", "outbox", "sagas", "migrations"} {
		step("screenshot of the "+panel+" panel", 10*time.Second,
			save(shots, "panel-"+panel+".png", chromedp.Screenshot("", css("#panel-"+panel))))
	}
	step("screenshot of the page with the diff open", 10*time.Second, save(shots, "dashboard-diff.png", chromedp.FullScreenshot(100)))
	if strings.Contains(up.out.String(), token) {
		t.Errorf("the admin token shows in ficus up's output")
	}
}

// save runs a screenshot action and writes the image to dir/name.
func save(dir, name string, shot chromedp.Action[[]byte]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		b, err := shot(ctx, tg)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o644)
	})
}
