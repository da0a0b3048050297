package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func parseConfig(t *testing.T, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "config.yaml"), []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const upWatchBase = `backends:
  monolith: { url: http://127.0.0.1:8081 }
  inventory: { url: http://127.0.0.1:8082, timeout: 2s }
routes: [{ match: { path: / }, to: monolith }]
monolith: { listen: 127.0.0.1:8081, modules: { inventory: %s } }
services:
  inventory: { listen: 127.0.0.1:8082 }
  payments: { listen: %s }
retention: { outbox: %s }
`

// TestDiffConfig: each edit restarts exactly the components that read what changed, naming
// the fields; the facade's own part restarts nothing; what ficus up applied itself (the
// sockets) is reported as needing ficus up restarted.
func TestDiffConfig(t *testing.T) {
	base := parseConfig(t, fmt.Sprintf(upWatchBase, "local", "127.0.0.1:8083", "24h"))
	for _, tc := range []struct {
		name, yml string
		restart   map[string][]string
		fixed     []string
	}{
		{"nothing", fmt.Sprintf(upWatchBase, "local", "127.0.0.1:8083", "24h"), map[string][]string{}, nil},
		{"a module goes remote", fmt.Sprintf(upWatchBase, "remote", "127.0.0.1:8083", "24h"),
			map[string][]string{"monolith": {"backends.inventory", "monolith.modules"}}, nil},
		{"a retention", fmt.Sprintf(upWatchBase, "local", "127.0.0.1:8083", "12h"),
			map[string][]string{"monolith": {"retention"}, "inventory": {"retention"}, "payments": {"retention"}}, nil},
		{"a service's listen address", fmt.Sprintf(upWatchBase, "local", "127.0.0.1:9083", "24h"),
			map[string][]string{}, []string{"services.payments.listen"}},
		{"a route", strings.Replace(fmt.Sprintf(upWatchBase, "local", "127.0.0.1:8083", "24h"), "routes: [{ match: { path: / }, to: monolith }]",
			"routes: [{ match: { path: / }, to: monolith }, { match: { path: /api/inventory, methods: [GET] }, to: inventory }]", 1),
			map[string][]string{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := diffConfig(base, parseConfig(t, tc.yml))
			if len(ch.restart) != len(tc.restart) {
				t.Errorf("restart %v, want %v", ch.restart, tc.restart)
			}
			for name, fields := range tc.restart {
				if !slices.Equal(ch.restart[name], fields) {
					t.Errorf("restart %s for %v, want %v", name, ch.restart[name], fields)
				}
			}
			if !slices.Equal(ch.fixed, tc.fixed) {
				t.Errorf("fixed %v, want %v", ch.fixed, tc.fixed)
			}
		})
	}
}

// TestUpRestartsWhatAConfigEditChanges: with ficus up running, switching
// monolith.modules.inventory to remote restarts the monolith alone — it says so — and the new
// monolith places orders through the inventory service (which has no items: the order is
// refused item_not_found, where the monolith's own seeded item sold before); an edit of the
// routes restarts nothing.
func TestUpRestartsWhatAConfigEditChanges(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "inventory", "payments", "bus")
	services := fmt.Sprintf("services:\n  inventory: { listen: %s }\n  payments: { listen: %s }\n", h.addr("inventory"), h.addr("payments"))
	cfgPath := upConfig(t, dir, h, services)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// A backend for the inventory service, so that the module can go remote.
	cfg := strings.Replace(string(raw), "backends:\n", fmt.Sprintf("backends:\n  inventory: { url: http://%s, timeout: 2s }\n", h.addr("inventory")), 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN=e2e-token-for-restarts")
	h.pass(cmd)
	up := startFicus(t, cmd)
	banner := strings.Join(up.out.waitFor(t, "Stop:   Ctrl-C", 90*time.Second), "\n")
	m := bannerLine.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no demo customer in the banner:\n%s", banner)
	}
	order := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":"BOOK-GO-1","quantity":1}]}`, m[2])
	mono := "http://" + h.addr("monolith")
	if status, body := httpDo("POST", mono+"/api/orders", order); status != 201 || strings.Contains(body, `"saga"`) {
		t.Fatalf("in local mode: %d %s, want 201 from one transaction", status, body)
	}
	pids := map[string]int{}
	for _, name := range []string{"monolith", "inventory", "payments", "facade", "bus"} {
		pids[name] = findProcess(t, "serve "+name+" -c "+cfgPath)
	}

	edited := strings.Replace(cfg, "monolith: { listen:", "monolith: { modules: { inventory: remote }, listen:", 1)
	if edited == cfg {
		t.Fatalf("the test's config has no monolith line to edit:\n%s", cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	up.out.waitFor(t, "changed backends.inventory, monolith.modules: restarting monolith", 30*time.Second)
	pollUntil(t, "the restarted monolith places orders through the inventory service", 60*time.Second, func() (bool, string) {
		status, body := httpDo("POST", mono+"/api/orders", order)
		return status == 404 && strings.Contains(body, "item_not_found"), fmt.Sprint(status, " ", body)
	})
	if np := findProcess(t, "serve monolith -c "+cfgPath); np == pids["monolith"] {
		t.Error("the monolith was not restarted")
	}
	for _, name := range []string{"inventory", "payments", "facade", "bus"} {
		if np := findProcess(t, "serve "+name+" -c "+cfgPath); np != pids[name] {
			t.Errorf("%s was restarted (pid %d → %d); only the monolith's part changed", name, pids[name], np)
		}
	}

	routes := strings.Replace(edited, "routes:\n", "routes:\n  - match: { path: /api/customers }\n    to: monolith\n", 1)
	if err := os.WriteFile(cfgPath, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	up.out.waitFor(t, "nothing to restart", 30*time.Second)

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Errorf("ficus up exited with %d:\n%s", code, up.out)
	}
}
