package facade

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

// TestDashboardPageIsOpenItsDataIsNot: the page and its files are served without the token
// (they hold no data) with a policy that keeps the page to its own files; every admin
// endpoint the page's script calls refuses a request without the token.
func TestDashboardPageIsOpenItsDataIsNot(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	h := startFacade(t, adminConfig(a, b))
	for path, ctype := range map[string]string{
		"/":                        "text/html; charset=utf-8",
		"/dashboard/dashboard.js":  "text/javascript; charset=utf-8",
		"/dashboard/dashboard.css": "text/css; charset=utf-8",
	} {
		resp, err := http.Get(h.admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype || len(body) == 0 {
			t.Errorf("GET %s without a token: %d %q, %d bytes; want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q does not keep the page to its own origin", path, csp)
		}
		if strings.Contains(string(body), testToken) {
			t.Errorf("GET %s shows the admin token", path)
		}
	}
	// Nothing but the page and its files is open: no listing, no second copy of the page.
	for _, path := range []string{"/dashboard/", "/dashboard/index.html", "/dashboard/nope.js", "/dashboard/sub/x.js"} {
		if status, _ := h.adminGet(path, ""); status != 404 {
			t.Errorf("GET %s: %d, want 404", path, status)
		}
	}

	script, err := fs.ReadFile(dashboardFiles, "dashboard/dashboard.js")
	if err != nil {
		t.Fatal(err)
	}
	calls := regexp.MustCompile(`fetch\("(/[^"]*)"`).FindAllStringSubmatch(string(script), -1)
	if len(calls) == 0 {
		t.Fatal("found no fetch(\"/…\") in dashboard.js: the test no longer sees what the page calls")
	}
	for _, c := range calls {
		path := c[1]
		if status, body := h.adminGet(path, ""); status != 401 || !strings.Contains(body, `"unauthorized"`) {
			t.Errorf("the page calls %s; without the token it answers %d %s, want 401", path, status, body)
		}
		if status, _ := h.adminGet(path, testToken); status != 200 {
			t.Errorf("the page calls %s; with the token it answers %d, want 200", path, status)
		}
	}
}

// TestDashboardFilesReferenceNothingElsewhere: the page, its script and its style name no
// other origin: no CDN, no font or image from the network, nothing built from elsewhere.
func TestDashboardFilesReferenceNothingElsewhere(t *testing.T) {
	n := 0
	err := fs.WalkDir(dashboardFiles, "dashboard", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(dashboardFiles, path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url(", "integrity="} {
			if i := strings.Index(string(b), bad); i >= 0 {
				t.Errorf("%s refers elsewhere: %q at byte %d", path, bad, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("%d embedded files, want the page, its script and its style", n)
	}
}

// countingSystem is a System that counts its reads and reports one of everything.
type countingSystem struct{ reads atomic.Int64 }

func (s *countingSystem) Status(ctx context.Context, cfg *config.Config) SystemStatus {
	s.reads.Add(1)
	return SystemStatus{Time: time.Now(), Outboxes: []OutboxStatus{{Database: cfg.Monolith.Database, Backlog: 3}},
		Sagas:      &SagaStatus{Counts: map[string]int64{"stuck": 1}, Active: []SagaSummary{{Order: "o1", State: "stuck"}}},
		Migrations: []MigrationStatus{{Capability: "inventory", Direction: "forward", Target: "inventory"}}}
}

// TestDashboardSnapshot: GET /api/dashboard carries the routes with their stages, each
// backend's traffic and history, the shadow's latest differing samples, the last reload and
// what the System reports, which it reads at most once per systemEvery however many ask.
func TestDashboardSnapshot(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	b.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"sku":"X","name":"from b"}`)
	})
	a.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"sku":"X","name":"from a"}`)
	})
	sys := &countingSystem{}
	h := startFacadeWith(t, `
backends:
  a: { url: `+a.URL()+` }
  b: { url: `+b.URL()+` }
routes:
  - name: inventory
    match: { path: /api/inventory }
    to: a
    shadow: { to: b, methods: [GET] }
  - match: { path: / }
    to: b
monolith: { database: "sqlite:mono.db" }
`, Options{System: sys})
	for range 4 {
		if status, _, _ := h.get("GET", "/api/inventory/items/X", nil); status != 200 {
			t.Fatalf("GET through the facade: %d", status)
		}
	}
	eventually(t, "the shadow compared the four samples", func() bool { return h.f.ShadowReports()[0].Samples >= 4 })
	// The proxy counts an answer as its handler returns, which may be after the client read
	// it; then a tick turns the answers into a point (the ticker's would take 2s).
	a4 := h.f.metrics.history.forBackend("a")
	eventually(t, "the four answers are counted", func() bool { return a4.total.n.Load() == 4 })
	h.f.metrics.history.tick(time.Now())

	read := func() Dashboard {
		status, body := h.adminGet("/api/dashboard", testToken)
		if status != 200 {
			t.Fatalf("GET /api/dashboard: %d %s", status, body)
		}
		var d Dashboard
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := read()
	if len(d.Routes) != 2 || d.Routes[0].Name != "inventory" || d.Routes[0].To != "a" || d.Routes[0].Stage != "shadow" {
		t.Errorf("routes = %+v, want inventory on a in the shadow stage first", d.Routes)
	}
	if !d.Reload.OK || d.Generation != 1 || d.Interval != historyInterval.String() {
		t.Errorf("reload %+v, generation %d, interval %q", d.Reload, d.Generation, d.Interval)
	}
	var backendA *BackendStatus
	for i := range d.Backends {
		if d.Backends[i].Name == "a" {
			backendA = &d.Backends[i]
		}
	}
	if backendA == nil || backendA.LastMinute.Requests != 4 || len(backendA.History) != 1 || backendA.LastMinute.P50 <= 0 {
		t.Errorf("backend a = %+v, want 4 requests in the last minute, one point of history, a p50", backendA)
	}
	if len(d.Shadow) != 1 || d.Shadow[0].Differences != 4 || len(d.Shadow[0].Recent) != 4 {
		t.Fatalf("shadow = %+v, want 4 differences with their samples", d.Shadow)
	}
	s := d.Shadow[0].Recent[0]
	if s.Primary.Backend != "a" || s.Candidate.Backend != "b" || len(s.Differences) == 0 || !strings.Contains(s.Candidate.Body, "from b") {
		t.Errorf("latest sample = %+v, want a against b with the differing body", s)
	}
	for i := 1; i < len(d.Shadow[0].Recent); i++ {
		if d.Shadow[0].Recent[i].Time.After(d.Shadow[0].Recent[i-1].Time) {
			t.Errorf("samples are not newest first: %v after %v", d.Shadow[0].Recent[i].Time, d.Shadow[0].Recent[i-1].Time)
		}
	}
	if d.System == nil || len(d.System.Outboxes) != 1 || d.System.Outboxes[0].Backlog != 3 || d.System.Sagas.Counts["stuck"] != 1 {
		t.Errorf("system = %+v, want the System's report", d.System)
	}
	for range 5 {
		read()
	}
	if n := sys.reads.Load(); n != 1 {
		t.Errorf("six snapshots within %s read the System %d times, want once", systemEvery, n)
	}
}

// TestDashboardSnapshotCapsSamples: however many samples differ, a route's snapshot carries
// the latest dashboardSamples of them.
func TestDashboardSnapshotCapsSamples(t *testing.T) {
	rep := ShadowReport{Route: "r", Endpoints: []EndpointReport{{Endpoint: "GET /x"}, {Endpoint: "GET /y"}}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 12 {
		e := &rep.Endpoints[i%2]
		e.Recent = append(e.Recent, DiffSample{Time: base.Add(time.Duration(i) * time.Second), RequestID: string(rune('a' + i))})
	}
	s := summarize(rep)
	if len(s.Recent) != dashboardSamples {
		t.Fatalf("%d samples, want %d", len(s.Recent), dashboardSamples)
	}
	for i, smp := range s.Recent {
		if want := base.Add(time.Duration(11-i) * time.Second); !smp.Time.Equal(want) {
			t.Errorf("sample %d at %v, want %v (the latest, newest first)", i, smp.Time, want)
		}
	}
	if len(s.Endpoints) != 2 {
		t.Errorf("%d endpoints, want 2", len(s.Endpoints))
	}
}

// TestDashboardWithoutSystem: a facade started without a System leaves it out of the
// snapshot; the page says those panels are not configured.
func TestDashboardWithoutSystem(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	h := startFacade(t, adminConfig(a, b))
	status, body := h.adminGet("/api/dashboard", testToken)
	if status != 200 || strings.Contains(body, `"system"`) {
		t.Errorf("GET /api/dashboard without a System: %d %s", status, body)
	}
}
