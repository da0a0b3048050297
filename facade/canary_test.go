package facade

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func canaryConfig(primary, candidate *testBackend, canary string) string {
	return fmt.Sprintf(`
facade:
  canary: { override_networks: [10.9.0.0/16] }
backends:
  primary: { url: %s }
  candidate: { url: %s, breaker: { consecutive_failures: 100000 } } # its errors reach the gates, not its breaker
routes:
  - name: items
    match: { path: /api/inventory }
    to: primary
    canary: %s
`, primary.URL(), candidate.URL(), canary)
}

// sides sends one request per key through the facade, from a few clients at once, and
// returns which keys the canary served.
func (h *harness) sides(keys int, header string) []bool {
	h.t.Helper()
	out := make([]bool, keys)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= keys {
					return
				}
				req, _ := http.NewRequest("GET", h.proxy.URL+"/api/inventory/items/A-1", nil)
				req.Header.Set(header, fmt.Sprintf("customer-%d", i))
				resp, err := client.Do(req)
				if err != nil {
					h.t.Error(err)
					return
				}
				resp.Body.Close()
				out[i] = resp.Header.Get("Ficus-Backend") == "candidate"
			}
		})
	}
	wg.Wait()
	return out
}

func count(v []bool) int {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return n
}

// TestStickyCanaryThroughTheFacade: a canary at 10% over 10,000 requests with sticky keys
// takes 10% within 1.5 points; every key lands on the same side again; raised to 20% by a
// reload, only keys that were on the primary move, and about 10% of them.
func TestStickyCanaryThroughTheFacade(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	yaml := canaryConfig(primary, candidate, "{ to: candidate, percent: 10, sticky: header:X-Customer-ID }")
	h := startFacade(t, yaml)
	const keys = 10_000
	first := h.sides(keys, "X-Customer-ID")
	if pct := 100 * float64(count(first)) / keys; pct < 8.5 || pct > 11.5 {
		t.Fatalf("canary took %.2f%% of 10,000 requests, want 10 ± 1.5", pct)
	}
	again := h.sides(2_000, "X-Customer-ID")
	for i := range again {
		if again[i] != first[i] {
			t.Fatalf("key customer-%d changed sides between two requests", i)
		}
	}
	h.writeConfig(strings.Replace(yaml, "percent: 10", "percent: 20", 1), false)
	if err := h.f.ReloadFile(h.path); err != nil {
		t.Fatal(err)
	}
	raised := h.sides(keys, "X-Customer-ID")
	moved := 0
	for i := range raised {
		if first[i] && !raised[i] {
			t.Fatalf("raising the canary moved customer-%d from the canary back to the primary", i)
		}
		if first[i] != raised[i] {
			moved++
		}
	}
	if pct := 100 * float64(count(raised)) / keys; pct < 18.5 || pct > 21.5 {
		t.Errorf("at 20%% the canary took %.2f%%", pct)
	}
	if pct := 100 * float64(moved) / keys; pct < 8.5 || pct > 11.5 {
		t.Errorf("raising 10%% to 20%% moved %.2f%% of keys, want about 10", pct)
	}
	if got := h.metric(`ficus_canary_percent{backend="candidate",route="items"}`); got != 20 {
		t.Errorf("ficus_canary_percent = %g", got)
	}
}

// TestCanaryOverride: the override header picks a backend with the admin token or from an
// override network; from anyone else it is ignored (and never forwarded); naming a backend
// the route does not have is a 400.
func TestCanaryOverride(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	h := startFacade(t, canaryConfig(primary, candidate, "{ to: candidate, percent: 0 }"))
	backend := func(hdr http.Header) (int, string) {
		status, _, got := h.get("GET", "/api/inventory/x", hdr)
		return status, got.Get("Ficus-Backend")
	}
	if _, b := backend(http.Header{"Ficus-Backend-Override": {"candidate"}}); b != "primary" {
		t.Errorf("an override without the token went to %s", b)
	}
	if got := primary.seen().header.Get("Ficus-Backend-Override"); got != "" {
		t.Errorf("the override header was forwarded: %q", got)
	}
	if _, b := backend(http.Header{"Ficus-Backend-Override": {"candidate"}, "Ficus-Admin-Token": {"wrong"}}); b != "primary" {
		t.Errorf("an override with a wrong token went to %s", b)
	}
	if _, b := backend(http.Header{"Ficus-Backend-Override": {"candidate"}, "Ficus-Admin-Token": {testToken}}); b != "candidate" {
		t.Errorf("an override with the token went to %s", b)
	}
	if got := candidate.seen().header.Get("Ficus-Admin-Token"); got != "" {
		t.Errorf("the admin token was forwarded: %q", got)
	}
	if status, _ := backend(http.Header{"Ficus-Backend-Override": {"nope"}, "Ficus-Admin-Token": {testToken}}); status != 400 {
		t.Errorf("an override naming no backend of the route: %d, want 400", status)
	}
	// From an override network (the test client is 127.0.0.1: add it).
	h.writeConfig(strings.Replace(canaryConfig(primary, candidate, "{ to: candidate, percent: 0 }"), "10.9.0.0/16", "127.0.0.1/32", 1), false)
	if err := h.f.ReloadFile(h.path); err != nil {
		t.Fatal(err)
	}
	if _, b := backend(http.Header{"Ficus-Backend-Override": {"candidate"}}); b != "candidate" {
		t.Errorf("an override from an override network went to %s", b)
	}
}

// TestCanaryRollsBackByItself: a canary whose candidate starts failing is rolled back within
// the gates' window: its share goes to the primary, the facade says why on the admin API,
// in the log and in the metrics, and it stays so until the route's config changes.
func TestCanaryRollsBackByItself(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	var failing atomic.Bool
	candidate.set(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(500)
			return
		}
		w.Write([]byte("candidate"))
	})
	canary := `{ to: candidate, percent: 50 }
    promote: { gates: { window: 2s, min_samples: 20, max_error_rate: 0.1 } }`
	yaml := canaryConfig(primary, candidate, canary)
	h := startFacade(t, yaml)
	send := func(n int) (toCandidate, errors int) {
		for range n {
			status, _, hdr := h.get("GET", "/api/inventory/x", nil)
			if hdr.Get("Ficus-Backend") == "candidate" {
				toCandidate++
			}
			if status >= 500 {
				errors++
			}
		}
		return
	}
	if c, e := send(100); c == 0 || e != 0 {
		t.Fatalf("a healthy canary: %d to the candidate, %d errors", c, e)
	}
	failing.Store(true)
	start := time.Now()
	var seen int
	for h.f.Promotion()[0].RolledBack == nil {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("no rollback within the 2s window; %d client errors", seen)
		}
		_, e := send(10)
		seen += e
		time.Sleep(rollbackCheckEvery / 10) // let the 100ms judging throttle pass now and then
	}
	t.Logf("rolled back %s after the candidate began failing, %d client errors", time.Since(start).Round(time.Millisecond), seen)
	if c, e := send(100); c != 0 || e != 0 {
		t.Fatalf("after the rollback: %d requests to the candidate, %d errors", c, e)
	}
	p := h.f.Promotion()[0]
	if rb := p.RolledBack; (rb.Gate != "error_rate" && rb.Gate != "error_increase") || !strings.Contains(rb.Detail, "errors") || p.OK {
		t.Errorf("promotion after rollback: %+v", p)
	}
	if h.metric(`ficus_canary_rolled_back{route="items"}`) != 1 || h.metric(`ficus_canary_rollbacks_total{route="items"}`) != 1 ||
		h.metric(`ficus_canary_percent{backend="candidate",route="items"}`) != 0 {
		t.Error("the rollback is not in the metrics")
	}
	if !strings.Contains(h.logs.String(), "canary rolled back") {
		t.Error("the rollback was not logged")
	}
	if _, body := h.adminGet("/api/routes", testToken); !strings.Contains(body, `"rolled_back"`) {
		t.Errorf("/api/routes does not show the rollback: %s", body)
	}
	// The decision is written to the config file for the other facades reading it.
	rb := waitShared(t, h.f)
	if !rb.Shared || rb.ShareError != "" || h.metric(`ficus_canary_rollback_shared{route="items"}`) != 1 {
		t.Errorf("the rollback was not shared: %+v", rb)
	}
	data, _ := os.ReadFile(h.path)
	if !strings.Contains(string(data), "canary: { to: candidate, percent: 0 } # rolled back from 50% at ") ||
		!strings.Contains(string(data), "gate "+rb.Gate+" failed: ") {
		t.Errorf("the config file after the rollback:\n%s", data)
	}
	// A reload that leaves the route alone keeps it rolled back; a change to it lifts it.
	h.writeConfig(yaml+"\n# a comment changes nothing\n", false)
	if err := h.f.ReloadFile(h.path); err != nil {
		t.Fatal(err)
	}
	if c, _ := send(50); c != 0 {
		t.Fatalf("a reload that left the route alone undid the rollback: %d to the candidate", c)
	}
	failing.Store(false)
	h.writeConfig(strings.Replace(yaml, "percent: 50", "percent: 40", 1), false)
	if err := h.f.ReloadFile(h.path); err != nil {
		t.Fatal(err)
	}
	if c, _ := send(100); c == 0 {
		t.Fatal("the canary did not run again after its route changed")
	}
}

// waitShared waits for the first route's rollback to be written to the config file, or to
// fail to be, and returns it.
func waitShared(t *testing.T, f *Facade) *Rollback {
	t.Helper()
	var rb *Rollback
	waitFor(t, "the rollback's write to the config file to settle", 5*time.Second, func() bool {
		rb = f.Promotion()[0].RolledBack
		return rb != nil && (rb.Shared || rb.ShareError != "")
	})
	return rb
}

// failCandidate makes a canary config whose candidate answers 500 to everything, and
// returns it with the candidate.
func failingCanary(t *testing.T) (yaml string, candidate *testBackend) {
	t.Helper()
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	candidate.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	return canaryConfig(primary, candidate, `{ to: candidate, percent: 50 }
    promote: { gates: { window: 2s, min_samples: 20, max_error_rate: 0.1 } }`), candidate
}

// tripRollback sends requests through h until its facade rolls the first route's canary
// back.
func tripRollback(t *testing.T, h *harness) {
	t.Helper()
	waitFor(t, "the canary rolled back", 5*time.Second, func() bool {
		for range 10 {
			h.get("GET", "/api/inventory/x", nil)
		}
		return h.f.Promotion()[0].RolledBack != nil
	})
}

// TestCanaryRollbackReachesAnotherFacade: two facades watch one config file; the one whose
// traffic trips the gate writes the rollback into the file, and the other, which saw none
// of that traffic, stops sending the canary any share once it has reloaded.
func TestCanaryRollbackReachesAnotherFacade(t *testing.T) {
	yaml, candidate := failingCanary(t)
	a := startFacadeWith(t, yaml, Options{Instance: "facade-a"})
	a.watch()
	// B on the same file.
	cfg, err := config.Load(a.path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, Options{Getenv: func(string) string { return testToken }, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	watchFacade(t, b, a.path)
	bProxy := httptest.NewServer(b.Handler())
	t.Cleanup(bProxy.Close)

	tripRollback(t, a)
	waitFor(t, "facade B to serve the canary at 0%", 3*time.Second, func() bool {
		r := b.Routes().Routes[0]
		return r.Canary != nil && r.Canary.Percent == 0
	})
	before := candidate.hits.Load()
	for range 100 {
		resp, err := http.Get(bProxy.URL + "/api/inventory/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Ficus-Backend") != "primary" {
			t.Fatalf("through B after the rollback: %d from %q", resp.StatusCode, resp.Header.Get("Ficus-Backend"))
		}
	}
	if n := candidate.hits.Load() - before; n != 0 {
		t.Errorf("B sent the rolled-back candidate %d requests", n)
	}
	data, _ := os.ReadFile(a.path)
	if !strings.Contains(string(data), "by facade facade-a: gate ") || strings.Count(string(data), "# rolled back") != 1 {
		t.Errorf("the config file after the rollback:\n%s", data)
	}
	// A, having reloaded the file it wrote, serves the route as the file says: at 0%, no
	// rollback of its own held any more.
	waitFor(t, "facade A to serve the canary at 0%", 3*time.Second, func() bool {
		r := a.f.Routes().Routes[0]
		return r.Canary != nil && r.Canary.Percent == 0 && r.RolledBack == nil
	})
}

// TestCanaryRollbackNotShared: when the config file cannot be written (here a symbolic
// link, as a mounted ConfigMap is), the rollback still holds in the facade that decided it,
// which says once, at WARN, that it could not share it, and shows shared: false.
func TestCanaryRollbackNotShared(t *testing.T) {
	yaml, candidate := failingCanary(t)
	h := startFacade(t, yaml)
	target := filepath.Join(t.TempDir(), "real.yaml")
	if err := os.Rename(h.path, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, h.path); err != nil {
		t.Fatal(err)
	}
	tripRollback(t, h)
	rb := waitShared(t, h.f)
	if rb.Shared || !strings.Contains(rb.ShareError, "symbolic link") {
		t.Errorf("rollback: %+v, want shared false and why", rb)
	}
	if h.metric(`ficus_canary_rolled_back{route="items"}`) != 1 || h.metric(`ficus_canary_rollback_shared{route="items"}`) != 0 {
		t.Error("the metrics do not say the rollback is held here alone")
	}
	if _, body := h.adminGet("/api/routes", testToken); !strings.Contains(body, `"shared": false`) {
		t.Errorf("/api/routes: %s", body)
	}
	before := candidate.hits.Load()
	for range 50 {
		if _, _, hdr := h.get("GET", "/api/inventory/x", nil); hdr.Get("Ficus-Backend") != "primary" {
			t.Fatal("the canary got a share after its rollback")
		}
	}
	if candidate.hits.Load() != before {
		t.Error("the candidate was sent requests after the rollback")
	}
	if n := strings.Count(h.logs.String(), "could not be shared"); n != 1 {
		t.Errorf("%d warnings that the rollback could not be shared, want 1", n)
	}
	if data, _ := os.ReadFile(target); string(data) != yaml {
		t.Error("the file changed")
	}
}

// waitFor polls cond every 5ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
