package facade

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func flipConfig(a, b, c *testBackend, to string) string {
	return fmt.Sprintf(`
facade:
  backend_header: Ficus-Backend
backends:
  a: { url: %s }
  b: { url: %s }
  c: { url: %s }
routes:
  - name: flipping
    match: { path: /api/inventory }
    to: %s
  - match: { path: / }
    to: c
`, a.URL(), b.URL(), c.URL(), to)
}

// TestFlipUnderLoad rewrites config.yaml over and over while clients keep sending: no
// request fails, and each one is answered by a backend the route named at some moment
// while it was in flight.
func TestFlipUnderLoad(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	for _, be := range []*testBackend{a, b, c} {
		name := be.name
		be.set(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // so requests straddle swaps
			io.WriteString(w, name)
		})
	}
	h := startFacade(t, flipConfig(a, b, c, "a"))
	h.watch()

	// The timeline of the route's target: before writes[i] it is targets[i]; from writes[i]
	// until applied[i] it may be targets[i] or targets[i+1].
	type flip struct {
		written, applied time.Time
		from, to         string
	}
	var (
		mu    sync.Mutex
		flips []flip
	)
	type result struct {
		start, end time.Time
		backend    string
		err        string
	}
	results := make(chan result, 1<<16)
	stop := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := result{start: time.Now()}
				resp, err := client.Get(h.proxy.URL + "/api/inventory/items")
				if err != nil {
					r.err = err.Error()
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.backend = resp.Header.Get("Ficus-Backend")
					if resp.StatusCode != 200 || string(body) != r.backend {
						r.err = fmt.Sprintf("status %d, body %q, Ficus-Backend %q", resp.StatusCode, body, r.backend)
					}
				}
				r.end = time.Now()
				results <- r
			}
		}()
	}

	current := "a"
	const rewrites = 24
	for i := range rewrites {
		time.Sleep(15 * time.Millisecond)
		next := map[string]string{"a": "b", "b": "a"}[current]
		f := flip{written: time.Now(), from: current, to: next}
		h.writeConfig(flipConfig(a, b, c, next), i%3 == 2)
		eventually(t, fmt.Sprintf("rewrite %d (to %s) is live", i, next), func() bool {
			return h.f.Routes().Routes[0].To == next
		})
		f.applied = time.Now()
		mu.Lock()
		flips = append(flips, f)
		mu.Unlock()
		current = next
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(results)

	// possible reports whether backend may have been the route's target at some moment in
	// [start, end].
	possible := func(backend string, start, end time.Time) bool {
		target := "a"
		from := time.Time{}
		for _, f := range flips {
			// [from, f.written): target; [f.written, f.applied]: f.from or f.to.
			if backend == target && start.Before(f.written) && !end.Before(from) {
				return true
			}
			if (backend == f.from || backend == f.to) && !start.After(f.applied) && !end.Before(f.written) {
				return true
			}
			target, from = f.to, f.applied
		}
		return backend == target && !end.Before(from)
	}
	n, failed, wrong := 0, 0, 0
	for r := range results {
		n++
		if r.err != "" {
			failed++
			if failed <= 5 {
				t.Errorf("request failed: %s", r.err)
			}
			continue
		}
		if !possible(r.backend, r.start, r.end) {
			wrong++
			if wrong <= 5 {
				t.Errorf("answered by %s, which the route did not name during [%s, %s]", r.backend,
					r.start.Format("15:04:05.000000"), r.end.Format("15:04:05.000000"))
			}
		}
	}
	t.Logf("%d requests across %d rewrites: %d failed, %d from the wrong backend", n, rewrites, failed, wrong)
	if n < 200 {
		t.Fatalf("only %d requests were sent", n)
	}
	if a.hits.Load() == 0 || b.hits.Load() == 0 || c.hits.Load() != 0 {
		t.Fatalf("hits: a %d, b %d, c %d", a.hits.Load(), b.hits.Load(), c.hits.Load())
	}
	if got := h.f.LastReload(); !got.OK || got.Generation < rewrites+1 {
		t.Fatalf("last reload %+v, want ok at generation ≥ %d", got, rewrites+1)
	}
}

// TestInvalidConfigKeepsServing breaks config.yaml in several ways: each edit is rejected
// with file:line reasons shown on the admin API and in the metrics, the last good config
// keeps serving, and a later valid edit is picked up.
func TestInvalidConfigKeepsServing(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	good := flipConfig(a, b, c, "a")
	h := startFacade(t, good)
	h.watch()

	broken := []struct {
		name, yaml, want string
	}{
		{"yaml syntax", good + "\n  - match: { path: /x\n", "YAML syntax"},
		{"unknown backend", strings.Replace(good, "to: a", "to: nowhere", 1), `unknown backend "nowhere"`},
		{"bad duration", strings.Replace(good, "a: { url: "+a.URL()+" }", "a: { url: "+a.URL()+", timeout: 5 parsecs }", 1), "invalid duration"},
		{"unknown field", strings.Replace(good, "a: { url: "+a.URL()+" }", "a: { url: "+a.URL()+", tmeout: 2s }", 1), `unknown field "tmeout"`},
	}
	for i, tt := range broken {
		prev := h.f.LastReload().Time
		h.writeConfig(tt.yaml, i%2 == 1)
		eventually(t, tt.name+" is rejected", func() bool {
			r := h.f.LastReload()
			return r.Time.After(prev) && !r.OK && strings.Contains(strings.Join(r.Errors, "\n"), tt.want)
		})
		// The reasons name the file and line, on the admin API too.
		status, body := h.adminGet("/api/reload", testToken)
		var res ReloadResult
		if status != 200 || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("%s: /api/reload %d %s", tt.name, status, body)
		}
		if res.OK || len(res.Errors) == 0 || !strings.HasPrefix(res.Errors[0], h.path+":") || res.Generation != 1 {
			t.Fatalf("%s: /api/reload = %+v, want a failure with %s:LINE reasons at generation 1", tt.name, res, h.path)
		}
		if tt.name != "yaml syntax" && !strings.Contains(strings.Join(res.Errors, "\n"), h.path+":") {
			t.Fatalf("%s: no line numbers: %v", tt.name, res.Errors)
		}
		// The old routes keep serving.
		if status, body, _ := h.get("GET", "/api/inventory", nil); status != 200 || body != "a" {
			t.Fatalf("%s: old route answers %d %q", tt.name, status, body)
		}
		if got := h.metric(`ficus_config_last_reload_success`); got != 0 {
			t.Fatalf("%s: ficus_config_last_reload_success = %v", tt.name, got)
		}
		if got := h.metric(`ficus_config_reloads_total{result="failure"}`); got < float64(i+1) {
			t.Fatalf("%s: failures counted %v, want ≥ %d", tt.name, got, i+1)
		}
	}
	if !strings.Contains(h.logs.String(), "config rejected") {
		t.Fatal("the rejection was not logged")
	}

	h.writeConfig(flipConfig(a, b, c, "b"), false)
	eventually(t, "the valid edit is live", func() bool {
		status, body, _ := h.get("GET", "/api/inventory", nil)
		return status == 200 && body == "b"
	})
	// The table is swapped in just before the reload's outcome is recorded.
	eventually(t, "the valid edit is recorded", func() bool { return h.f.LastReload().Generation == 2 })
	if r := h.f.LastReload(); !r.OK || r.Generation != 2 || len(r.Errors) != 0 {
		t.Fatalf("last reload %+v", r)
	}
	if got := h.metric(`ficus_config_last_reload_success`); got != 1 {
		t.Fatalf("ficus_config_last_reload_success = %v after a good edit", got)
	}
	if got := h.metric(`ficus_config_reloads_total{result="success"}`); got < 1 {
		t.Fatalf("successes counted %v", got)
	}
}

// TestReloadKeepsResilienceState checks a backend whose settings did not change keeps its
// breaker across a reload, and one whose settings changed starts afresh.
func TestReloadKeepsResilienceState(t *testing.T) {
	bad, other := startBackend(t, "bad"), startBackend(t, "other")
	bad.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	cfgText := func(route, timeout string) string {
		return fmt.Sprintf(`
backends:
  bad: { url: %s, timeout: %s, breaker: { consecutive_failures: 2, open_for: 1m } }
  other: { url: %s }
routes:
  - name: %s
    match: { path: / }
    to: bad
`, bad.URL(), timeout, other.URL(), route)
	}
	h := startFacade(t, cfgText("r1", "2s"))
	h.get("GET", "/", nil)
	h.get("GET", "/", nil)
	if st := h.f.Backends()[0].Breaker; st != "open" {
		t.Fatalf("breaker %s after 2 failures", st)
	}
	reload := func(text string) {
		if err := h.f.Reload(mustParse(t, h.path, text)); err != nil {
			t.Fatal(err)
		}
	}
	reload(cfgText("r2", "2s"))
	if st := h.f.Backends()[0].Breaker; st != "open" {
		t.Fatalf("breaker %s after a reload that left the backend alone, want still open", st)
	}
	if status, body, _ := h.get("GET", "/", nil); status != 503 || !strings.Contains(body, "circuit_open") {
		t.Fatalf("%d %s", status, body)
	}
	reload(cfgText("r2", "3s"))
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s after the backend's settings changed, want a fresh closed one", st)
	}
	if g := h.f.Routes().Generation; g != 3 {
		t.Fatalf("generation %d, want 3", g)
	}
	if got := h.metric(`ficus_facade_requests_total{backend="bad",code="5xx",route="r1"}`); got != -1 {
		t.Fatalf("series of the removed route r1 still exported: %v", got)
	}
}

func mustParse(t *testing.T, path, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConfigMapSwapIsReloaded mounts config.yaml as Kubernetes mounts a ConfigMap: the file
// is a symlink through "..data" to a timestamped directory, and an update writes a new
// directory and swaps the "..data" symlink atomically. The config file's own name never
// changes, yet the swap must be reloaded.
func TestConfigMapSwapIsReloaded(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	dir := t.TempDir()
	version := func(name, yaml string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_01_01_00_00_00.1", flipConfig(a, b, c, "a"))
	if err := os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, Options{AdminToken: testToken, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	watchFacade(t, f, path)

	// The kubelet's update: a new directory, a new symlink, renamed over "..data".
	version("..2026_01_01_00_05_00.2", flipConfig(a, b, c, "b"))
	if err := os.Symlink("..2026_01_01_00_05_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	// The table is swapped in just before the reload's outcome is recorded: wait for both.
	eventually(t, "the swapped ConfigMap is live", func() bool {
		r := f.LastReload()
		return f.Routes().Routes[0].To == "b" && r.OK && r.Generation == 2
	})
}
