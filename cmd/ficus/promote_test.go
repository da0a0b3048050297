package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/platform/config"
)

const promoteConfig = `# Ficus, as an operator keeps it.
facade:
  admin: { token_env: PROMOTE_TEST_TOKEN }
backends:
  monolith: { url: %s }   # the old world
  inventory: { url: %s }  # the extracted service

routes:
  # Reads of inventory, on their way to the service.
  - name: inventory-reads
    match: { path: /api/inventory, methods: [GET, HEAD] }
    to: monolith            # still the monolith
    shadow: { to: inventory, recheck: 0s }
    promote:
      # quick gates for a test
      gates: { window: 1s, min_samples: 20 }
  - match: { path: / }
    to: monolith
`

// promoteRig is a facade serving a config file, with its admin API on loopback, a primary
// and a candidate whose answers the test controls.
type promoteRig struct {
	path     string
	f        *facade.Facade
	proxy    string
	admin    string
	env      func(string) string
	wrongAns atomic.Bool // the candidate answers with another price
}

func startPromoteRig(t *testing.T) *promoteRig {
	t.Helper()
	r := &promoteRig{}
	answer := func(price int) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"sku":"A-1","price_cents":%d}`, price)
		}
	}
	mono := httptest.NewServer(answer(350))
	t.Cleanup(mono.Close)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.wrongAns.Load() {
			answer(351)(w, req)
			return
		}
		answer(350)(w, req)
	}))
	t.Cleanup(svc.Close)
	r.path = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(r.path, []byte(fmt.Sprintf(promoteConfig, mono.URL, svc.URL)), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.f, err = facade.New(cfg, facade.Options{AdminToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.f.Close)
	proxy := httptest.NewServer(r.f.Handler())
	t.Cleanup(proxy.Close)
	admin := httptest.NewServer(r.f.AdminHandler())
	t.Cleanup(admin.Close)
	r.proxy, r.admin = proxy.URL, admin.URL
	r.env = func(k string) string { return map[string]string{"PROMOTE_TEST_TOKEN": "tok"}[k] }
	return r
}

// traffic sends n reads through the facade.
func (r *promoteRig) traffic(t *testing.T, n int) {
	t.Helper()
	for range n {
		resp, err := http.Get(r.proxy + "/api/inventory/items/A-1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func (r *promoteRig) ficus(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, r.env, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestPromoteFollowsTheGates: ficus promote refuses while the shadow finds differences,
// naming the gate and its figures; once the candidate answers alike and the window has
// moved past the differences, it promotes the route to a canary, editing config.yaml in
// place with every comment kept; the reloaded facade runs the canary; the next promotion is
// refused for want of canary samples.
func TestPromoteFollowsTheGates(t *testing.T) {
	r := startPromoteRig(t)
	before, _ := os.ReadFile(r.path)
	r.wrongAns.Store(true)
	r.traffic(t, 40)
	waitFor(t, "40 shadow samples", func() bool { return r.f.ShadowReports()[0].Samples >= 40 })
	_, stderr, err := r.ficus(t, "promote", "-c", r.path, "-admin", r.admin, "inventory-reads")
	if exitCode(err) != 1 || !strings.Contains(stderr, "refused: gate diff_rate failed: 40 of 40 compared pairs differ (100.00%), limit 1.00%") {
		t.Fatalf("promote with differences: %v\n%s", err, stderr)
	}
	if after, _ := os.ReadFile(r.path); !bytes.Equal(after, before) {
		t.Fatal("a refused promotion changed the file")
	}

	r.wrongAns.Store(false)
	waitFor(t, "the gates to hold", func() bool {
		r.traffic(t, 5)
		p := r.f.Promotion()
		return len(p) == 1 && p[0].OK
	})
	stdout, stderr, err := r.ficus(t, "promote", "-c", r.path, "-admin", r.admin, "inventory-reads")
	if err != nil {
		t.Fatalf("promote once the gates hold: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "shadow → canary 10%") || !strings.Contains(stdout, "  ok  diff_rate") {
		t.Errorf("promote said:\n%s", stdout)
	}
	after, _ := os.ReadFile(r.path)
	want := strings.Replace(string(before), "    shadow: { to: inventory, recheck: 0s }\n",
		"    shadow: { to: inventory, recheck: 0s }\n    canary: { to: inventory, percent: 10 }\n", 1)
	if string(after) != want {
		t.Fatalf("the edited config.yaml:\n%s\nwant (every comment kept, one line added):\n%s", after, want)
	}
	if fi, _ := os.Stat(r.path); fi.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode became %v", fi.Mode().Perm())
	}
	if err := r.f.ReloadFile(r.path); err != nil {
		t.Fatal(err)
	}
	if p := r.f.Promotion()[0]; p.Stage != "canary" || p.Percent != 10 {
		t.Fatalf("after the reload: %+v", p)
	}
	_, stderr, err = r.ficus(t, "promote", "-c", r.path, "-admin", r.admin, "inventory-reads")
	if exitCode(err) != 1 || !strings.Contains(stderr, "gate error_rate failed") || !strings.Contains(stderr, "fewer than min_samples 20") {
		t.Fatalf("a canary without samples was promoted: %v\n%s", err, stderr)
	}
	// -force goes on regardless.
	if _, stderr, err := r.ficus(t, "promote", "-force", "-c", r.path, "-admin", r.admin, "inventory-reads"); err != nil {
		t.Fatalf("promote -force: %v\n%s", err, stderr)
	}
	if after, _ := os.ReadFile(r.path); !strings.Contains(string(after), "percent: 50") || !strings.Contains(string(after), "# still the monolith") {
		t.Fatalf("after -force:\n%s", after)
	}
}

// TestPromoteRefusesAnUnloadedEdit: the gates judge what the facade runs, so a file whose
// route the facade has not loaded is not promoted.
func TestPromoteRefusesAnUnloadedEdit(t *testing.T) {
	r := startPromoteRig(t)
	data, _ := os.ReadFile(r.path)
	edited := strings.Replace(string(data), "shadow: { to: inventory, recheck: 0s }", "shadow: { to: inventory }\n    canary: { to: inventory, percent: 10 }", 1)
	if err := os.WriteFile(r.path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := r.ficus(t, "promote", "-c", r.path, "-admin", r.admin, "inventory-reads")
	if err == nil || !strings.Contains(err.Error(), "has not loaded the file's version") {
		t.Fatalf("promote of an unloaded edit: %v", err)
	}
}

// TestPlanShowsTheChange: ficus plan compares a file with the running facade, per route.
func TestPlanShowsTheChange(t *testing.T) {
	r := startPromoteRig(t)
	out, _, err := r.ficus(t, "plan", "-c", r.path, "-admin", r.admin)
	if err != nil || !strings.HasPrefix(out, "No changes:") {
		t.Fatalf("plan of the served file: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(r.path)
	next := filepath.Join(filepath.Dir(r.path), "next.yaml")
	edited := strings.Replace(string(data), "    to: monolith            # still the monolith", "    to: inventory\n    fallback: monolith", 1)
	edited = strings.Replace(edited, "    shadow: { to: inventory, recheck: 0s }\n", "", 1)
	edited = strings.Replace(edited, "  - match: { path: / }", "  - match: { path: /api/orders }\n    to: monolith\n  - match: { path: / }", 1)
	if err := os.WriteFile(next, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = r.ficus(t, "plan", "-c", next, "-admin", r.admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ficus plan:\n%s", out)
	for _, want := range []string{
		"~ route inventory-reads (stage shadow → full)",
		"    ~ to: monolith → inventory",
		"    + fallback: monolith",
		"    - shadow.to: inventory",
		"+ route /api/orders",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "backend ") {
		t.Errorf("plan shows backend changes that are not there:\n%s", out)
	}
	if err := os.WriteFile(next, []byte("routes: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := r.ficus(t, "plan", "-c", next, "-admin", r.admin); exitCode(err) != 1 || !strings.Contains(stderr, "next.yaml:1") {
		t.Errorf("plan of a broken file: %v %s", err, stderr)
	}
}

// waitFor polls cond every 20ms for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
