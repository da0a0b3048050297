package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpDo sends one request and returns its status and body; a transport error is status 0
// with the error as the body.
func httpDo(method, url, body string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pollUntil repeats try until it reports done, for at most timeout, and fails the test with
// its last answer if it never does.
func pollUntil(t *testing.T, what string, timeout time.Duration, try func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, last := try()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

// TestServeInventory runs the inventory service as a real process on a socket the test
// holds: it migrates its own database, serves the contract and its metrics, stops cleanly on
// SIGTERM, and a new process on the same socket finds the data it took.
func TestServeInventory(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "inventory")
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`backends: { monolith: { url: http://127.0.0.1:1 } }
routes: [{ match: { path: / }, to: monolith }]
services:
  inventory: { listen: %s, database: sqlite:data/inventory.db }
events: { bus: nats://127.0.0.1:1 }
`, h.addr("inventory"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://" + h.addr("inventory")
	start := func() *process {
		cmd := exec.Command(ficusBin, "serve", "inventory", "-c", cfgPath)
		h.pass(cmd)
		p := startFicus(t, cmd)
		p.out.waitFor(t, "msg=serving", 30*time.Second)
		return p
	}
	p := start()
	if status, body := httpDo("POST", base+"/api/inventory/items", `{"sku":"E2E-1","name":"Kettle","price_cents":1999,"on_hand":5}`); status != 201 {
		t.Fatalf("creating an item: %d %s", status, body)
	}
	if status, body := httpDo("POST", base+"/api/inventory/reservations", `{"order_id":"e2e-1","lines":[{"sku":"E2E-1","quantity":2}]}`); status != 201 {
		t.Fatalf("reserving: %d %s", status, body)
	}
	status, metrics := httpDo("GET", base+"/metrics", "")
	if status != 200 || !strings.Contains(metrics, `ficus_retention_pruned_rows_total{database="inventory",table="ficus_outbox"}`) {
		t.Errorf("/metrics: %d, no pruner metrics for the service's outbox:\n%.2000s", status, metrics)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "inventory.db")); err != nil {
		t.Errorf("the service's database is not where services.inventory.database says: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.out)
	}

	start()
	status, body := httpDo("GET", base+"/api/inventory/items/E2E-1", "")
	if status != 200 || !strings.Contains(body, `"reserved":2`) || !strings.Contains(body, `"available":3`) {
		t.Errorf("after a restart: %d %s, want the item with 2 reserved", status, body)
	}
}

var bannerLine = regexp.MustCompile(`(?m)^\s+(ada@example\.com)\s+(\S+)`)

// TestUpStartsTheServices: ficus up with services in its config starts five components,
// each its own process on the socket it holds, and lists them. The payments service learns
// the seeded customers from the monolith's events through the real bus and charges them;
// killed, it comes back on the same socket with its copy intact. Routes still send every
// path to the monolith.
func TestUpStartsTheServices(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "inventory", "payments", "bus")
	cfgPath := upConfig(t, dir, h, fmt.Sprintf("services:\n  inventory: { listen: %s }\n  payments: { listen: %s }\n",
		h.addr("inventory"), h.addr("payments")))
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN=e2e-token-for-services")
	h.pass(cmd)
	up := startFicus(t, cmd)
	banner := strings.Join(up.out.waitFor(t, "Stop:   Ctrl-C", 90*time.Second), "\n")
	for _, want := range []string{
		"Started 5 components",
		"inventory   http://" + h.addr("inventory") + " ", "extracted service, database sqlite:data/inventory.db",
		"payments    http://" + h.addr("payments") + " ", "extracted service, database sqlite:data/payments.db",
		"monolith    http://" + h.addr("monolith"), "facade      http://" + h.addr("facade"),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	m := bannerLine.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no demo customer in the banner:\n%s", banner)
	}
	ada := m[2]
	payments := "http://" + h.addr("payments")
	charge := `{"customer_id":"` + ada + `","amount_cents":100,"reference":"e2e"}`
	// The four seeded customers reach the copy through the monolith's outbox, the bus and the
	// service's inbox.
	pollUntil(t, "the payments service's customer copy has the seeded customers", 30*time.Second, func() (bool, string) {
		_, metrics := httpDo("GET", payments+"/metrics", "")
		copyLines := regexp.MustCompile(`(?m)^ficus_payments_customer_copy.*$`).FindAllString(metrics, -1)
		return strings.Contains(metrics, `ficus_payments_customer_copy_events_total{result="applied"} 4`+"\n"), strings.Join(copyLines, "; ")
	})
	if status, body := httpDo("GET", payments+"/readyz/customers", ""); status != 200 || !strings.Contains(body, `"caught_up"`) {
		t.Errorf("/readyz/customers: %d %s, want 200 caught_up", status, body)
	}
	if status, body := httpDo("POST", payments+"/api/payments", charge); status != 201 {
		t.Fatalf("charging a seeded customer at the payments service: %d %s", status, body)
	}
	// Routes still send every path to the monolith: the facade answers with its item, which
	// the (empty) inventory service does not have.
	status, body := httpDo("GET", "http://"+h.addr("facade")+"/api/inventory/items/BOOK-GO-1", "")
	if status != 200 || !strings.Contains(body, `"sku":"BOOK-GO-1"`) {
		t.Errorf("inventory through the facade: %d %s, want the monolith's seeded item", status, body)
	}
	if status, _ := httpDo("GET", "http://"+h.addr("inventory")+"/api/inventory/items/BOOK-GO-1", ""); status != 404 {
		t.Errorf("the inventory service has the monolith's item (%d) before any migration", status)
	}

	pid := findProcess(t, "serve payments -c "+cfgPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the payments service comes back and charges again", 30*time.Second, func() (bool, string) {
		status, body := httpDo("POST", payments+"/api/payments", charge)
		return status == 201, fmt.Sprint(status, " ", body)
	})
	if np := findProcess(t, "serve payments -c "+cfgPath); np == pid {
		t.Error("the payments service was not restarted")
	}

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Errorf("ficus up exited with %d:\n%s", code, up.out)
	}
	if left := processesWith("-c " + cfgPath); len(left) > 0 {
		t.Errorf("components still running after ficus up stopped: %v", left)
	}
}

// TestCheckRefusesWritesToAServiceWhoseModuleIsLocal: config.yaml's stage 1 (reads on the
// services) passes ficus check; its stage 2 routes (writes too) with the modules still local
// are refused, exit 1, with each route's file:line and what to do.
func TestCheckRefusesWritesToAServiceWhoseModuleIsLocal(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, keep func(line string) (string, bool)) string {
		var out []string
		for _, line := range strings.Split(string(raw), "\n") {
			if l, ok := keep(line); ok {
				out = append(out, l)
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	uncomment := regexp.MustCompile(`^(\s*)#([12]) `)
	stage1 := write("stage1.yaml", func(line string) (string, bool) {
		if m := uncomment.FindStringSubmatch(line); m != nil && m[2] == "1" {
			return uncomment.ReplaceAllString(line, "$1"), true
		}
		return line, true
	})
	out, err := exec.Command(ficusBin, "check", "-c", stage1).CombinedOutput()
	if code := exitStatus(err); code != 0 {
		t.Errorf("stage 1: exit %d\n%s", code, out)
	}
	// Stage 2's routes, the modules left as they are (local).
	early := write("early.yaml", func(line string) (string, bool) {
		switch m := uncomment.FindStringSubmatch(line); {
		case m != nil && strings.HasSuffix(line, ": remote"):
			return line, true
		case m != nil:
			return uncomment.ReplaceAllString(line, "$1"), true
		case strings.HasSuffix(line, "# stage 0") && !strings.Contains(line, ": local"):
			return "", false
		}
		return line, true
	})
	out, err = exec.Command(ficusBin, "check", "-c", early).CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("stage 2 routes with local modules: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(regexp.QuoteMeta(early) + `:\d+:\d+: routes\[\d+\]\.to: sends POST, PUT, PATCH, DELETE requests under /api/inventory to backend "inventory", the inventory service, while monolith.modules.inventory is local`),
		regexp.MustCompile(regexp.QuoteMeta(early) + `:\d+:\d+: routes\[\d+\]\.to: sends POST, PUT, PATCH, DELETE requests under /api/payments to backend "payments"`),
		regexp.MustCompile(`Route only reads there \(match: \{ path: /api/payments, methods: \[GET, HEAD\] \}\)`),
		regexp.MustCompile(`2 problem\(s\)`),
	} {
		if !want.Match(out) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
}
