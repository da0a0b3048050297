package facade

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/dryrun"
)

// jsonHandler answers every request with the JSON body make returns for it.
func jsonHandler(make func(r *http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, make(r))
	}
}

// item answers like an inventory item: the SKU from the path, fixed fields.
func item(name string) func(r *http.Request) string {
	return func(r *http.Request) string {
		sku := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		return fmt.Sprintf(`{"sku":%q,"name":%q,"price_cents":350,"on_hand":42}`, sku, name)
	}
}

func shadowConfig(primary, candidate *testBackend, shadow string) string {
	return fmt.Sprintf(`
facade:
  shadow: { report_file: diffs.jsonl }
backends:
  primary: { url: %s }
  candidate: { url: %s }
routes:
  - name: items
    match: { path: /api/inventory, methods: [GET, HEAD] }
    to: primary
    shadow: %s
  - match: { path: / }
    to: primary
`, primary.URL(), candidate.URL(), shadow)
}

// awaitSamples waits until route's shadow report counts n samples (compared or failed) and
// returns it.
func (h *harness) awaitSamples(route string, n int64) ShadowReport {
	h.t.Helper()
	var rep ShadowReport
	eventually(h.t, fmt.Sprintf("%d shadow samples on %s", n, route), func() bool {
		for _, r := range h.f.ShadowReports() {
			if r.Route == route {
				rep = r
				return r.Samples+r.Dropped >= n
			}
		}
		return false
	})
	return rep
}

// TestShadowComparesAndNamesTheField: every sampled read is compared; equal answers match,
// and a candidate that changes one field is caught with the field named, in the report, on
// the admin API, in the metrics and in the report file, secrets redacted.
func TestShadowComparesAndNamesTheField(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	primary.set(jsonHandler(item("Fig sticker")))
	candidate.set(jsonHandler(item("Fig sticker")))
	h := startFacade(t, shadowConfig(primary, candidate, "{ to: candidate, recheck: 0s }"))
	for i := range 20 {
		status, body, hdr := h.get("GET", fmt.Sprintf("/api/inventory/items/A-%d", i), nil)
		if status != 200 || hdr.Get("Ficus-Backend") != "primary" || !strings.Contains(body, "Fig sticker") {
			t.Fatalf("client got %d %q from %s", status, body, hdr.Get("Ficus-Backend"))
		}
	}
	rep := h.awaitSamples("items", 20)
	if rep.Matches != 20 || rep.Differences != 0 || rep.Dropped != 0 || rep.Endpoints[0].Endpoint != "GET /api/inventory/items/{id}" {
		t.Fatalf("equal answers: %+v", rep)
	}
	if candidate.hits.Load() != 20 {
		t.Errorf("the candidate saw %d requests, want 20", candidate.hits.Load())
	}
	if got := candidate.seen().header.Get(headerShadow); got != "1" {
		t.Errorf("the candidate's copy lacks %s: %q", headerShadow, got)
	}

	candidate.set(jsonHandler(item("Fig Sticker")))
	h.get("GET", "/api/inventory/items/B-1", http.Header{"Authorization": {"Bearer secret-token"}, "Cookie": {"sid=s3cret"}})
	rep = h.awaitSamples("items", 21)
	if rep.Differences != 1 || rep.DiffRate == 0 {
		t.Fatalf("a changed field: %+v", rep)
	}
	ep := rep.Endpoints[0]
	if len(ep.TopFields) != 1 || ep.TopFields[0].Field != "body /name" || ep.TopFields[0].Count != 1 {
		t.Errorf("top fields %+v, want body /name once", ep.TopFields)
	}
	if len(ep.Recent) != 1 {
		t.Fatalf("recent samples: %+v", ep.Recent)
	}
	ds := ep.Recent[0]
	if len(ds.Differences) != 1 || ds.Differences[0].Path != "/name" || ds.Differences[0].A != `"Fig sticker"` || ds.Differences[0].B != `"Fig Sticker"` {
		t.Errorf("differences %+v, want /name: Fig sticker vs Fig Sticker", ds.Differences)
	}
	if ds.Request.Path != "/api/inventory/items/B-1" || ds.Request.Header.Get("Authorization") != "[redacted]" ||
		ds.Request.Header.Get("Cookie") != "[redacted]" || ds.Primary.Status != 200 || !strings.Contains(ds.Candidate.Body, "Fig Sticker") {
		t.Errorf("sample %+v", ds)
	}
	status, body := h.adminGet("/api/shadow", testToken)
	if status != 200 || !strings.Contains(body, `"field": "body /name"`) || strings.Contains(body, "secret-token") {
		t.Errorf("/api/shadow: %d %s", status, body)
	}
	if got := h.metric(`ficus_shadow_samples_total{result="difference",route="items"}`); got != 1 {
		t.Errorf("difference metric = %g", got)
	}
	if got := h.metric(`ficus_shadow_samples_total{result="match",route="items"}`); got != 20 {
		t.Errorf("match metric = %g", got)
	}
	file, err := os.ReadFile(filepath.Join(filepath.Dir(h.path), "diffs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var line DiffSample
	if lines := strings.Split(strings.TrimSpace(string(file)), "\n"); len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &line) != nil ||
		line.Differences[0].Path != "/name" || strings.Contains(lines[0], "secret-token") || strings.Contains(lines[0], "s3cret") {
		t.Errorf("report file: %s", file)
	}
}

// TestShadowLearnsNoise: both sides stamp each answer with the time; without any ignore
// rule, learning finds the stamp varies between two answers of the primary, ignores it,
// and says so, so the answers match; a real difference is still caught.
func TestShadowLearnsNoise(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	stamped := func(name string) http.HandlerFunc {
		return jsonHandler(func(r *http.Request) string {
			return fmt.Sprintf(`{"sku":"A-1","name":%q,"served_at":%q,"request":{"at":%q}}`, name,
				time.Now().Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano))
		})
	}
	primary.set(stamped("Fig"))
	candidate.set(stamped("Fig"))
	h := startFacade(t, shadowConfig(primary, candidate, "{ to: candidate, learn: 0.1, recheck: 0s }"))
	for range 30 {
		h.get("GET", "/api/inventory/items/A-1", nil)
	}
	rep := h.awaitSamples("items", 30)
	ep := rep.Endpoints[0]
	if rep.Differences != 0 || rep.Matches != 30 {
		t.Fatalf("timestamps were not learnt as noise: %+v", rep)
	}
	if !slices.Equal(ep.Noise, []string{"/request/at", "/served_at"}) && !slices.Equal(ep.Noise, []string{"/served_at", "/request/at"}) {
		t.Errorf("noise %v, want /served_at and /request/at", ep.Noise)
	}
	if !strings.Contains(h.logs.String(), "shadow learnt noise") {
		t.Error("learning was not logged")
	}
	candidate.set(stamped("Fig!"))
	h.get("GET", "/api/inventory/items/A-1", nil)
	rep = h.awaitSamples("items", 31)
	if rep.Differences != 1 || rep.Endpoints[0].TopFields[0].Field != "body /name" {
		t.Errorf("a real difference after learning: %+v", rep)
	}
}

// TestShadowRechecksLag: a candidate that answers from behind (the old value, then the
// new) is asked again after the recheck delay; a pair that matches then counts as lag, not
// as a difference.
func TestShadowRechecksLag(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	primary.set(jsonHandler(func(*http.Request) string { return `{"on_hand":5}` }))
	var asked atomic.Int64
	candidate.set(jsonHandler(func(*http.Request) string {
		if asked.Add(1) == 1 {
			return `{"on_hand":4}` // not caught up yet
		}
		return `{"on_hand":5}`
	}))
	h := startFacade(t, shadowConfig(primary, candidate, "{ to: candidate, recheck: 20ms }"))
	h.get("GET", "/api/inventory/items/A-1", nil)
	rep := h.awaitSamples("items", 1)
	if rep.Lag != 1 || rep.Differences != 0 || rep.DiffRate != 0 || asked.Load() != 2 {
		t.Fatalf("lag: %+v after %d candidate requests", rep, asked.Load())
	}
	// A difference that stays is one.
	candidate.set(jsonHandler(func(*http.Request) string { return `{"on_hand":3}` }))
	h.get("GET", "/api/inventory/items/A-1", nil)
	rep = h.awaitSamples("items", 2)
	if rep.Differences != 1 || !rep.Endpoints[0].Recent[0].Rechecked {
		t.Fatalf("a lasting difference: %+v", rep)
	}
}

// TestSlowCandidateLeavesTheClientAlone: with the candidate 3 s slow and every request
// shadowed, the client's latency stays that of the primary (a generous bound: the
// benchmark measures it precisely), the shadow queue fills and drops samples, counted,
// and no client request fails.
func TestSlowCandidateLeavesTheClientAlone(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	primary.set(jsonHandler(item("Fig")))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	candidate.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second): // far above any scheduling noise of a busy machine
		case <-release:
		}
		jsonHandler(item("Fig"))(w, r)
	})
	cfg := strings.Replace(shadowConfig(primary, candidate, "{ to: candidate, recheck: 0s }"),
		"shadow: { report_file: diffs.jsonl }", "shadow: { queue: 4, concurrency: 2 }", 1)
	h := startFacade(t, cfg)
	measure := func() time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := range 50 {
					start := time.Now()
					status, _, _ := h.get("GET", fmt.Sprintf("/api/inventory/items/C%d-%d", c, i), nil)
					d := time.Since(start)
					if status != 200 {
						t.Errorf("client got %d", status)
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	on := measure()
	h.writeConfig(strings.Replace(cfg, "shadow: { to: candidate, recheck: 0s }", "shadow: { to: candidate, sample: 0 }", 1), false)
	if err := h.f.ReloadFile(h.path); err != nil {
		t.Fatal(err)
	}
	off := measure()
	t.Logf("client p99 with a 3s candidate shadowed: %s; shadowing off: %s", on, off)
	if on > off+time.Second || on > 2*time.Second {
		t.Errorf("client p99 %s with shadowing on, %s off: the candidate's 3s reached the client", on, off)
	}
	if got := h.metric(`ficus_shadow_dropped_total{reason="queue_full",route="items"}`); got <= 0 {
		t.Errorf("queue_full drops = %g, want some: 200 samples cannot fit a queue of 4 served at 4/s", got)
	}
}

// TestClientsCannotMarkADryRun: a client's Ficus-Dry-Run header is dropped by the facade,
// so the primary runs the request as the client meant it; the candidate of a shadowed write
// gets the facade's own signed header, and its answer must confirm the rollback.
func TestClientsCannotMarkADryRun(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	secret := []byte("s")
	verifier := dryrun.NewVerifier(secret, time.Minute, nil)
	var verified atomic.Int64
	candidate.set(func(w http.ResponseWriter, r *http.Request) {
		if err := verifier.Verify(r.Method, r.URL.Path, r.Header.Get(dryrun.Header)); err == nil {
			verified.Add(1)
			w.Header().Set(dryrun.Header, dryrun.Done)
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"ok":true}`)
	})
	primary.set(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, `{"ok":true}`)
	})
	yaml := fmt.Sprintf(`
backends:
  primary: { url: %s }
  candidate: { url: %s, dry_run: true }
routes:
  - name: writes
    match: { path: /api/inventory }
    to: primary
    shadow: { to: candidate }
`, primary.URL(), candidate.URL())
	cfg := mustParse(t, "c.yaml", yaml)
	if _, err := New(cfg, Options{AdminToken: testToken}); err == nil || !strings.Contains(err.Error(), "dry-run secret") {
		t.Fatalf("a facade with no dry-run secret shadowing writes: %v", err)
	}
	h := startFacadeWith(t, yaml, Options{DryRunSecret: secret})
	resp := h.do("POST", "/api/inventory/items", http.Header{dryrun.Header: {"v1:0:forged"}, "Content-Type": {"application/json"}}, strings.NewReader(`{"sku":"X"}`))
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := primary.seen(); got.header.Get(dryrun.Header) != "" || got.body != `{"sku":"X"}` {
		t.Errorf("the primary got %q for the client's dry-run header, body %q", got.header.Get(dryrun.Header), got.body)
	}
	rep := h.awaitSamples("writes", 1)
	if verified.Load() != 1 || rep.Matches != 1 || candidate.seen().body != `{"sku":"X"}` {
		t.Errorf("the candidate verified %d signed copies; report %+v; body %q", verified.Load(), rep, candidate.seen().body)
	}
	// A candidate that does not confirm the rollback is an error, logged.
	candidate.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201); io.WriteString(w, `{"ok":true}`) })
	resp = h.do("POST", "/api/inventory/items", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"sku":"Y"}`))
	resp.Body.Close()
	rep = h.awaitSamples("writes", 2)
	if rep.Errors != 1 || !strings.Contains(h.logs.String(), "not confirmed as rolled back") {
		t.Errorf("an unconfirmed dry run: %+v", rep)
	}
}

// TestShadowValidation: shadowing writes to a backend that does not declare dry_run is a
// config error, with the line, naming the methods.
func TestShadowValidation(t *testing.T) {
	_, err := config.Parse("c.yaml", []byte(`
backends:
  m: { url: http://127.0.0.1:1 }
  s: { url: http://127.0.0.1:2 }
routes:
  - match: { path: /api/inventory }
    to: m
    shadow: { to: s }
  - match: { path: /api/payments, methods: [GET, POST] }
    to: m
    shadow: { to: s, methods: [GET] }
`))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:8:") || !strings.Contains(err.Error(), "routes[0].shadow.to: mirrors every method (POST, PUT, PATCH, DELETE among them)") ||
		strings.Contains(err.Error(), "routes[1]") {
		t.Fatalf("got %v", err)
	}
}

// TestShadowLeavesUpgradesAlone: a protocol upgrade on a shadowed route is relayed as
// usual (the proxy needs the backend's connection, which a copy would hide) and not
// sampled.
func TestShadowLeavesUpgradesAlone(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	primary.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString(line)
		brw.Flush()
	})
	h := startFacade(t, shadowConfig(primary, candidate, "{ to: candidate }"))
	addr := strings.TrimPrefix(h.proxy.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /api/inventory/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade through a shadowed route: %v %v", resp, err)
	}
	fmt.Fprintf(c, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo over the upgraded connection: %q %v", line, err)
	}
	if candidate.hits.Load() != 0 || len(h.f.ShadowReports()[0].Endpoints) != 0 {
		t.Errorf("an upgrade was shadowed: %d candidate hits", candidate.hits.Load())
	}
}
