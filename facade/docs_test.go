package facade

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/prometheus/client_golang/prometheus"
)

// facadeDoc returns the lines of one section ("## Metrics") of docs/facade.md.
func facadeDoc(t *testing.T, section string) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/facade.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = line == section
			continue
		}
		if in {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("docs/facade.md has no section %q", section)
	}
	return lines
}

// tableRows returns the cells of the table rows in lines, header and rule left out.
func tableRows(lines []string) [][]string {
	var rows [][]string
	for _, line := range lines {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| ---") {
			continue
		}
		line = strings.ReplaceAll(line, `\|`, "¦") // an escaped pipe is not a cell border
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows[1:]
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// TestDocumentedMetricsExist checks the metrics table of docs/facade.md against the facade's
// registry, both ways: every documented metric exists, and every ficus_ metric is documented.
func TestDocumentedMetricsExist(t *testing.T) {
	documented := map[string]bool{}
	for _, row := range tableRows(facadeDoc(t, "## Metrics")) {
		documented[strings.Trim(row[0], "`")] = true
	}
	cfg, err := config.Parse("c.yaml", []byte("backends: { m: { url: http://127.0.0.1:1, health: { disabled: true } } }\nroutes: [{ match: { path: / }, to: m }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f, err := New(cfg, Options{Registry: reg, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	// The registry does not list its collectors, so ask the facade's own, by describing
	// them into a registry that records what it is given.
	descs := make(chan *prometheus.Desc, 256)
	for _, c := range f.metrics.collectors() {
		c.Describe(descs)
	}
	close(descs)
	registered := map[string]bool{}
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			registered[m[1]] = true
		}
	}
	for name := range documented {
		if !registered[name] {
			t.Errorf("docs/facade.md documents %s, which the facade does not register", name)
		}
	}
	for name := range registered {
		if !documented[name] {
			t.Errorf("the facade registers %s, which docs/facade.md does not document", name)
		}
	}
	// And the facade's collectors are really on the registry it serves.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "ficus_") && !registered[mf.GetName()] {
			t.Errorf("%s is on the registry but not among the facade's collectors", mf.GetName())
		}
	}
}

// docKey is one key of a documented JSON answer: whether it may be left out, and the keys
// of its value when that is an object (or a list of objects). map means the object's keys
// are names (BACKEND), not fixed.
type docKey struct {
	optional bool
	fields   map[string]*docKey
	isMap    bool
}

var docToken = regexp.MustCompile(`"[^"]*"\??|[{}\[\]:,]|[A-Z]+`)

// parseDocJSON reads the keys of a documented answer such as
// {"a", "b"?: {"c"}, "d": [{"e"}]}: a quoted string right after "{" or "," inside an object is
// a key, "?" after it makes it optional, and a value after ":" that opens an object or a
// list of objects holds the key's own keys.
func parseDocJSON(s string) *docKey {
	root := &docKey{fields: map[string]*docKey{}}
	type frame struct {
		node   *docKey
		object bool
	}
	stack := []frame{{node: root, object: false}}
	var last *docKey // the key whose value comes next
	prev := ""
	for _, tok := range docToken.FindAllString(s, -1) {
		top := &stack[len(stack)-1]
		switch {
		case tok == "{" || tok == "[":
			n := top.node
			if prev == ":" && last != nil {
				n = last
				if n.fields == nil {
					n.fields = map[string]*docKey{}
				}
			}
			stack = append(stack, frame{node: n, object: tok == "{"})
		case tok == "}" || tok == "]":
			stack = stack[:len(stack)-1]
		case strings.HasPrefix(tok, `"`) && top.object && (prev == "{" || prev == ","):
			k := &docKey{optional: strings.HasSuffix(tok, "?")}
			top.node.fields[strings.Trim(tok, `"?`)] = k
			last = k
		case tok[0] >= 'A' && tok[0] <= 'Z' && top.object && prev == "{":
			top.node.isMap = true
		}
		prev = tok
	}
	return root
}

// checkJSON compares an answer with its documented keys. Every key in the answer must be
// documented. In a full answer (every optional setting used) every documented key must show
// up, in at least one element of a list; in a minimal one every key not marked optional must
// be present, and every key marked optional absent, so the marks are true both ways.
func checkJSON(t *testing.T, where string, doc *docKey, v any, full bool) {
	t.Helper()
	seen := map[*docKey]map[string]bool{}
	var walk func(where string, doc *docKey, v any)
	walk = func(where string, doc *docKey, v any) {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), doc, e)
			}
		case map[string]any:
			if doc.isMap {
				return
			}
			if seen[doc] == nil {
				seen[doc] = map[string]bool{}
			}
			for k, got := range v {
				d, ok := doc.fields[k]
				if !ok {
					t.Errorf("%s: the answer has %q, which the docs do not show", where, k)
					continue
				}
				seen[doc][k] = true
				if !full && d.optional {
					t.Errorf("%s: the docs mark %q as left out when empty, but a minimal answer has it", where, k)
				}
				if d.fields != nil {
					walk(where+"."+k, d, got)
				}
			}
			if !full {
				for k, d := range doc.fields {
					if _, ok := v[k]; !ok && !d.optional {
						t.Errorf("%s: the docs show %q as always there, but the answer lacks it", where, k)
					}
				}
			}
		}
	}
	walk(where, doc, v)
	if full {
		for d, keys := range seen {
			for _, k := range slices.Sorted(mapKeysOf(d.fields)) {
				if !keys[k] {
					t.Errorf("%s: the docs show %q, which no answer has", where, k)
				}
			}
		}
	}
}

func mapKeysOf[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestDocumentedAdminAPIExists checks each admin endpoint docs/facade.md lists answers, and
// that the keys of its JSON answer are the documented ones: all of them in a full answer
// (every optional setting used), the optional ones left out of a minimal one.
func TestDocumentedAdminAPIExists(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	full := startFacadeWith(t, adminConfig(a, b), Options{System: fullSystem{}})
	fillLiveState(t, full)
	// A tick gives every backend a point of traffic history (GET /api/dashboard).
	full.f.metrics.history.tick(time.Now())
	// A failed reload, so the reload answer shows its errors too.
	full.writeConfig("routes: [", false)
	if err := full.f.ReloadFile(full.path); err == nil {
		t.Fatal("a broken config was accepted")
	}
	minimal := startFacade(t, fmt.Sprintf("backends:\n  a: { url: %s }\nroutes:\n  - match: { path: / }\n    to: a\n", a.URL()))
	// A config that came from no file: the reload answer has no path.
	cfg := mustParse(t, "", fmt.Sprintf("backends:\n  a: { url: %s }\nroutes:\n  - match: { path: / }\n    to: a\n", a.URL()))
	cfg.Path = ""
	if err := minimal.f.Reload(cfg); err != nil {
		t.Fatal(err)
	}

	rows := tableRows(facadeDoc(t, "## Admin API"))
	var endpoints []string
	for _, row := range rows {
		method, path, ok := strings.Cut(strings.Trim(row[0], "`"), " ")
		if !ok || method != "GET" {
			t.Fatalf("admin table row %q: want `GET /path`", row[0])
		}
		endpoints = append(endpoints, path)
		for name, h := range map[string]*harness{"full": full, "minimal": minimal} {
			status, body := h.adminGet(path, testToken)
			if status != 200 {
				t.Errorf("%s (%s): %d %s", path, name, status, body)
				continue
			}
			// The documented JSON is the first code span that opens an object or a list.
			var docJSON string
			for _, span := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(row[1], -1) {
				if strings.HasPrefix(span[1], "{") || strings.HasPrefix(span[1], "[") {
					docJSON = span[1]
					break
				}
			}
			if docJSON == "" {
				continue // not JSON (metrics), or not fixed (the config)
			}
			var v any
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Errorf("%s: not JSON: %v", path, err)
				continue
			}
			checkJSON(t, name+" "+path, parseDocJSON(docJSON), v, name == "full")
		}
	}
	sort.Strings(endpoints)
	want := []string{"/api/backends", "/api/config", "/api/dashboard", "/api/promotion", "/api/reload", "/api/routes", "/api/shadow", "/healthz", "/metrics", "/readyz"}
	if !slices.Equal(endpoints, want) {
		t.Fatalf("documented endpoints %v, want %v", endpoints, want)
	}
}

// TestDocumentedErrorCodes checks the error table of docs/facade.md lists every problem code
// the facade answers with, and nothing else.
func TestDocumentedErrorCodes(t *testing.T) {
	documented := map[string]bool{}
	for _, row := range tableRows(facadeDoc(t, "## Errors")) {
		documented[strings.Trim(row[1], "`")] = true
	}
	made := map[string]bool{"ambiguous_path": true, "no_route": true, "bad_override": true}
	for _, c := range codes {
		made[c] = true
	}
	for _, r := range reasons {
		made[r] = true
	}
	for c := range made {
		if !documented[c] {
			t.Errorf("the facade answers with code %s, which docs/facade.md does not list", c)
		}
	}
	for c := range documented {
		if !made[c] {
			t.Errorf("docs/facade.md lists code %s, which the facade never answers with", c)
		}
	}
}

// fillLiveState gives a facade serving adminConfig every optional part of its live state,
// so that a full answer shows every documented key: shadow samples that differ (the two
// backends answer their own names), a dropped one, learnt noise, and a rolled-back canary.
func fillLiveState(t *testing.T, h *harness) {
	t.Helper()
	for range 40 {
		h.get("GET", "/api/inventory/x", http.Header{"X-Tenant": {"t1"}})
	}
	eventually(t, "a shadow difference", func() bool { return h.f.ShadowReports()[0].Differences > 0 })
	tbl := h.f.table.Load()
	rep := tbl.routes[0].live.report
	rep.drop(dropQueueFull)
	ep, err := rep.endpoint("GET /api/inventory/{id}")
	if err != nil {
		t.Fatal(err)
	}
	rep.learn(ep, compare.Result{Differences: []compare.Difference{{Part: compare.PartBody, Path: "/served_at", Kind: compare.Changed}}})
	// A re-checked sample the candidate failed, with more differences than it lists; dated
	// ahead so that it is among the dashboard's latest samples whatever the shadow still adds.
	rep.record(ep, outcomeError, &DiffSample{Time: time.Now().Add(time.Hour), Route: "inventory", Endpoint: ep.name, RequestID: "r-1", Rechecked: true,
		Request:     SampledRequest{Method: "GET", Path: "/api/inventory/x", Header: http.Header{"Accept": {"*/*"}}, Body: "{}"},
		Primary:     SampledResponse{Backend: "a", Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: "{}", Seconds: 0.01},
		Candidate:   SampledResponse{Backend: "b", Error: "connection refused", Seconds: 0.01},
		Differences: []compare.Difference{{Part: compare.PartBody, Path: "/a", Kind: compare.Changed, A: "1", B: "2", Note: "why"}}, Omitted: 3})
	tbl.routes[1].live.rolledBack.Store(&Rollback{Time: time.Now(), Gate: "error_rate", Detail: "filled in by the test", ShareError: "filled in by the test"})
}

// fullSystem is a System whose report has every optional part, for the full answer of
// GET /api/dashboard.
type fullSystem struct{}

func (fullSystem) Status(context.Context, *config.Config) SystemStatus {
	now := time.Now().UTC()
	lag := 0.25
	return SystemStatus{Time: now,
		Outboxes: []OutboxStatus{{Database: "monolith", Backlog: 2, Oldest: &now}, {Database: "inventory", Error: "no database yet"}},
		Sagas: &SagaStatus{Counts: map[string]int64{"stuck": 1}, More: true, Error: "a later page failed",
			Active: []SagaSummary{{Order: "o1", Kind: "place", State: "stuck", Step: "release", Attempts: 5, Reason: "payment_declined", Error: "down", Updated: now}}},
		Migrations: []MigrationStatus{{Capability: "inventory", Direction: "forward", Target: "inventory",
			Tables:       []MigrationTable{{Table: "inventory_items", Copied: 4, Expected: 4, Done: true}},
			BackfillDone: &now, SyncFrom: 3, SyncedTo: 9, EventsApplied: 6, SyncedAt: &now, Lag: &lag, Running: "host:42",
			Verify: &MigrationVerify{At: now, Rows: 4, Summary: "clean"}}},
		Errors: []string{"payments database: cannot open"},
	}
}
