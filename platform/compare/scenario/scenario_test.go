package scenario_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/compare/scenario"
)

// shop is a small system under test: widgets with generated ids, and a stock to take from.
type shop struct {
	prefix  string // ids are prefix-1, prefix-2, …
	oversel bool   // take always succeeds
	sameID  bool   // every widget gets the same id
	mu      sync.Mutex
	n       int
	widgets map[string]int
	stock   int
	// hiddenReads makes the first reads of a widget answer 404, as a lagging copy would.
	hiddenReads atomic.Int32
	reads       atomic.Int32
}

func (s *shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	problem := func(status int, code string) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "code": code, "instance": r.URL.Path})
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/widgets":
		var in struct{ Count int }
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			problem(400, "malformed_json")
			return
		}
		if !s.sameID || s.n == 0 {
			s.n++
		}
		id := fmt.Sprintf("%s-%d", s.prefix, s.n)
		s.widgets[id] = in.Count
		w.Header().Set("Location", "/widgets/"+id)
		reply(201, map[string]any{"id": id, "count": in.Count, "created_at": time.Now().UTC()})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/widgets/"):
		s.reads.Add(1)
		id := strings.TrimPrefix(r.URL.Path, "/widgets/")
		c, ok := s.widgets[id]
		if !ok || s.hiddenReads.Add(-1) >= 0 {
			problem(404, "not_found")
			return
		}
		reply(200, map[string]any{"id": id, "count": c, "created_at": time.Now().UTC()})
	case r.Method == http.MethodPost && r.URL.Path == "/take":
		if s.stock <= 0 && !s.oversel {
			problem(409, "sold_out")
			return
		}
		s.stock--
		reply(201, map[string]any{"left": s.stock})
	default:
		problem(404, "not_found")
	}
}

func newShop(t *testing.T, prefix string, stock int) (*shop, string) {
	t.Helper()
	s := &shop{prefix: prefix, widgets: map[string]int{}, stock: stock}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func suite(t *testing.T, files map[string]string) *scenario.Suite {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys["s/"+name] = &fstest.MapFile{Data: []byte(body)}
	}
	s, err := scenario.Load(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, s *scenario.Suite, a, b scenario.Target, opts scenario.Options) *scenario.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := scenario.Run(ctx, s, a, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func text(t *testing.T, r *scenario.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const widgetScenario = `
name: widgets
rules:
  capture: [{at: /id}]
steps:
  - name: make a widget
    request: {method: POST, path: /widgets, json: {count: 3}}
    expect: {status: 201, body: {/count: 3}}
    capture: {widget: /id, location: "header:Location"}
  - name: read it
    request: {method: GET, path: "/widgets/${widget}"}
    expect: {status: 200, body: {/id: "${widget}", /count: 3.0}}
  - name: read it where it said
    request: {method: GET, path: "${location}"}
    expect: {status: 200}
  - name: an unknown widget
    request: {method: GET, path: /widgets/nope}
    expect: {status: 404, code: not_found}
`

func TestRunCapturesAndPairsGeneratedIDs(t *testing.T) {
	_, a := newShop(t, "a", 0)
	_, b := newShop(t, "b", 0)
	rep := run(t, suite(t, map[string]string{"w.yaml": widgetScenario}), scenario.Target{Name: "one", URL: a}, scenario.Target{Name: "two", URL: b},
		scenario.Options{Endpoints: []string{"GET /widgets/{id}", "POST /widgets"}})
	if rep.Failed() {
		t.Fatalf("differently generated ids made the sides differ:\n%s", text(t, rep))
	}
	want := map[string][3]int{ // requests, matches, differences
		"POST /widgets":     {1, 1, 0},
		"GET /widgets/{id}": {3, 3, 0},
	}
	for _, e := range rep.Endpoints {
		w, ok := want[e.Endpoint]
		if !ok || [3]int{e.Requests, e.Matches, e.Differences} != w {
			t.Errorf("endpoint %s: %d requests, %d matches, %d differences; want %v", e.Endpoint, e.Requests, e.Matches, e.Differences, w)
		}
	}
	if rep.Scenarios != 1 || rep.Steps != 4 {
		t.Errorf("%d scenarios, %d steps", rep.Scenarios, rep.Steps)
	}
}

func TestRunReportsADifferenceWithItsRequest(t *testing.T) {
	_, a := newShop(t, "a", 0)
	sb, b := newShop(t, "b", 0)
	sb.widgets["nope"] = 1 // B knows a widget A does not
	rep := run(t, suite(t, map[string]string{"w.yaml": widgetScenario}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	if !rep.Failed() {
		t.Fatal("not failed")
	}
	var e *scenario.EndpointReport
	for _, x := range rep.Endpoints {
		if x.Endpoint == "GET /widgets/nope" { // no templates: the step's path names it
			e = x
		}
	}
	if e == nil || e.Differences != 1 || len(e.Samples) != 1 {
		t.Fatalf("endpoints: %+v", rep.Endpoints)
	}
	m := e.Samples[0]
	if m.Request.Method != "GET" || m.Request.Path != "/widgets/nope" || m.Step != "an unknown widget" || !strings.HasSuffix(m.Where, "s/w.yaml:16") {
		t.Errorf("sample: %+v", m)
	}
	if m.Differences[0].Part != compare.PartStatus || m.Differences[0].A != "404" || m.Differences[0].B != "200" {
		t.Errorf("differences: %+v", m.Differences)
	}
	// B also failed the step's expectation, and only B.
	if len(rep.Failures) != 2 || rep.Failures[0].Side != "B" {
		t.Errorf("failures: %+v", rep.Failures)
	}
	// The JSON form carries the same.
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back scenario.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	found := false
	for _, x := range back.Endpoints {
		for _, s := range x.Samples {
			for _, d := range s.Differences {
				found = found || (x.Endpoint == "GET /widgets/nope" && d.Part == compare.PartStatus && d.Kind == compare.Changed)
			}
		}
	}
	if !found || !back.Failed() {
		t.Errorf("JSON report lost the difference: %s", buf.Bytes())
	}
	if !strings.Contains(text(t, rep), "request: GET /widgets/nope") {
		t.Errorf("text report:\n%s", text(t, rep))
	}
}

func TestRunStopsAScenarioWhoseCaptureFails(t *testing.T) {
	_, a := newShop(t, "a", 0)
	rep := run(t, suite(t, map[string]string{"w.yaml": widgetScenario}), scenario.Target{URL: a},
		scenario.Target{URL: "http://127.0.0.1:1"}, scenario.Options{Timeout: time.Second})
	txt := text(t, rep)
	if !rep.Failed() || rep.Steps != 1 || !strings.Contains(txt, "scenario stopped") || !strings.Contains(txt, "capture widget from /id") {
		t.Errorf("steps %d:\n%s", rep.Steps, txt)
	}
}

func TestRunCatchesIDsThatDoNotCorrespond(t *testing.T) {
	_, a := newShop(t, "a", 0)
	sb, b := newShop(t, "b", 0)
	sb.sameID = true // B hands out one id for two widgets
	twice := widgetScenario + `
  - name: make another widget
    request: {method: POST, path: /widgets, json: {count: 4}}
    expect: {status: 201}
    capture: {widget2: /id}
`
	rep := run(t, suite(t, map[string]string{"w.yaml": twice}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	txt := text(t, rep)
	if !rep.Failed() || !strings.Contains(txt, `capture widget2: the sides' values do not correspond: B's "b-1" is paired with A's "a-1", not "a-2"`) {
		t.Errorf("two of A's ids paired with one of B's:\n%s", txt)
	}
}

const setupScenario = `
name: lagging
steps:
  - name: make a widget where it is owned
    setup: true
    request: {method: POST, path: /widgets, json: {count: 1}}
    expect: {status: 201}
    capture: {widget: /id}
  - name: the candidate has it
    request: {method: GET, path: "/widgets/${widget}"}
    expect: {status: 200}
`

func TestRunSendsSetupElsewhereAndWaitsForCatchUp(t *testing.T) {
	_, a := newShop(t, "a", 0)
	owner, ownerURL := newShop(t, "b", 0)
	// The candidate is a copy of the owner, updated only when it catches up.
	candidate := &shop{prefix: "b", widgets: map[string]int{}}
	srv := httptest.NewServer(candidate)
	t.Cleanup(srv.Close)
	var calls atomic.Int32
	b := scenario.Target{Name: "candidate", URL: srv.URL, SetupURL: ownerURL, CaughtUp: func(ctx context.Context) error {
		calls.Add(1)
		owner.mu.Lock()
		defer owner.mu.Unlock()
		candidate.mu.Lock()
		defer candidate.mu.Unlock()
		for k, v := range owner.widgets {
			candidate.widgets[k] = v
		}
		return nil
	}}
	rep := run(t, suite(t, map[string]string{"l.yaml": setupScenario}), scenario.Target{URL: a}, b, scenario.Options{})
	if rep.Failed() || calls.Load() != 1 {
		t.Fatalf("caught up %d times:\n%s", calls.Load(), text(t, rep))
	}
	if candidate.n != 0 || owner.n != 1 {
		t.Errorf("setup went to the candidate (%d) instead of the owner (%d)", candidate.n, owner.n)
	}
	for _, e := range rep.Endpoints {
		if e.Endpoint == "POST /widgets" && (e.Matches != 0 || e.Differences != 0) {
			t.Errorf("a setup step was compared: %+v", e)
		}
	}

	// A target that does not catch up in time stops the scenario.
	b.CaughtUp = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	rep = run(t, suite(t, map[string]string{"l.yaml": setupScenario}), scenario.Target{URL: a}, b, scenario.Options{CatchUpTimeout: 50 * time.Millisecond})
	if txt := text(t, rep); !rep.Failed() || !strings.Contains(txt, "did not catch up") || rep.Steps != 1 {
		t.Errorf("a target that never caught up:\n%s", txt)
	}
}

func TestRunAwaitsALaggingCopy(t *testing.T) {
	_, a := newShop(t, "a", 0)
	sb, b := newShop(t, "b", 0)
	body := func(await string) string {
		return strings.Replace(setupScenario, "    expect: {status: 200}\n", "    expect: {status: 200}\n"+await, 1)
	}
	sb.hiddenReads.Store(3)
	rep := run(t, suite(t, map[string]string{"l.yaml": body("    await: 5s\n")}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	if rep.Failed() || sb.reads.Load() != 4 {
		t.Errorf("awaiting a copy that shows up on the 4th read: %d reads\n%s", sb.reads.Load(), text(t, rep))
	}
	sb.hiddenReads.Store(1_000_000)
	rep = run(t, suite(t, map[string]string{"l.yaml": body("    await: 100ms\n")}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	if txt := text(t, rep); !rep.Failed() || !strings.Contains(txt, "still failing after awaiting 100ms") {
		t.Errorf("awaiting a copy that never shows up:\n%s", txt)
	}
	sb.hiddenReads.Store(1)
	rep = run(t, suite(t, map[string]string{"l.yaml": body("")}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	if !rep.Failed() {
		t.Error("without await, a lagging copy passed")
	}
}

const raceScenario = `
name: race
steps:
  - name: 40 takes from 10
    concurrent: 40
    request: {method: POST, path: /take, json: {n: "${i}"}}
    expect:
      statuses: {201: 10, 409: 30}
      codes: {sold_out: 30}
`

func TestRunConcurrentOutcomes(t *testing.T) {
	_, a := newShop(t, "a", 10)
	_, b := newShop(t, "b", 10)
	rep := run(t, suite(t, map[string]string{"r.yaml": raceScenario}), scenario.Target{URL: a}, scenario.Target{URL: b}, scenario.Options{})
	if rep.Failed() || rep.Endpoints[0].Requests != 40 || rep.Endpoints[0].Matches != 1 {
		t.Fatalf("a fair race:\n%s", text(t, rep))
	}

	_, a2 := newShop(t, "a", 10)
	over, b2 := newShop(t, "b", 10)
	over.oversel = true
	rep = run(t, suite(t, map[string]string{"r.yaml": raceScenario}), scenario.Target{URL: a2}, scenario.Target{Name: "over", URL: b2}, scenario.Options{})
	txt := text(t, rep)
	for _, want := range []string{"statuses 201×40, want 201×10, 409×30", "0 answers with code sold_out, want 30", "- A: 201×10, 409 sold_out×30", "+ B: 201×40"} {
		if !strings.Contains(txt, want) {
			t.Errorf("report lacks %q:\n%s", want, txt)
		}
	}

	// Both oversell alike: no difference, still a failure on each side.
	over1, a3 := newShop(t, "a", 10)
	over2, b3 := newShop(t, "b", 10)
	over1.oversel, over2.oversel = true, true
	rep = run(t, suite(t, map[string]string{"r.yaml": raceScenario}), scenario.Target{URL: a3}, scenario.Target{URL: b3}, scenario.Options{})
	if !rep.Failed() || rep.Totals().Differences != 0 || rep.Totals().Failures != 4 {
		t.Errorf("both oversell: %+v\n%s", rep.Totals(), text(t, rep))
	}
}

func TestRunChecksOnlyDocumentedEndpoints(t *testing.T) {
	_, a := newShop(t, "a", 0)
	_, b := newShop(t, "b", 0)
	var mu sync.Mutex
	checked := map[string]int{}
	opts := scenario.Options{
		Endpoints: []string{"POST /widgets", "GET /widgets/{id}"},
		Check: func(_ context.Context, req *http.Request, status int, _ http.Header, _ []byte) error {
			mu.Lock()
			defer mu.Unlock()
			checked[req.Method+" "+req.URL.Path]++
			if status == 404 {
				return errors.New("404 is not documented")
			}
			return nil
		},
	}
	rep := run(t, suite(t, map[string]string{"w.yaml": widgetScenario}), scenario.Target{URL: a}, scenario.Target{URL: b}, opts)
	if checked["POST /widgets"] != 2 || checked["GET /widgets/a-1"] != 2 || checked["GET /widgets/b-1"] != 2 {
		t.Errorf("checked %v", checked)
	}
	// The 404 of /widgets/nope matches a template, so it was checked, and failed on both sides.
	if got := rep.Totals().Failures; got != 2 || !strings.Contains(text(t, rep), "the answer breaks the contract: 404 is not documented") {
		t.Errorf("%d failures:\n%s", got, text(t, rep))
	}
}

func TestRunRefusesWhatItCannotRun(t *testing.T) {
	s := suite(t, map[string]string{"w.yaml": widgetScenario})
	_, err := scenario.Run(context.Background(), s, scenario.Target{}, scenario.Target{URL: "localhost:80"}, scenario.Options{
		Scenarios: []string{"nope"}, Endpoints: []string{"/widgets"}, Rules: compare.Rules{Ignore: []string{"bad"}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"target A: no URL", `target B: "localhost:80" is not an absolute URL`, `no scenario "nope"`, `endpoint "/widgets"`, "must be empty or start with /"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, a := newShop(t, "a", 0)
	if _, err := scenario.Run(ctx, s, scenario.Target{URL: a}, scenario.Target{URL: a}, scenario.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestLoadReportsEveryProblemWithItsLine(t *testing.T) {
	bad := `
name: bad
steps:
  - name: no status
    request: {method: GET, path: /x}
    expect: {}
  - name: undefined variable
    request: {method: GET, path: "/x/${nope}"}
    expect: {status: 200}
  - name: await a POST
    request: {method: POST, path: /x}
    await: 1s
    expect: {status: 200}
  - name: a race without an outcome
    concurrent: 5
    request: {method: POST, path: /x}
    expect: {}
  - name: json and body
    request: {method: PUT, path: x, json: {a: 1}, body: "{}"}
    expect: {status: 200}
    capture: {Bad: id}
  - name: a bad method and ignore pattern
    request: {method: FETCH, path: /x}
    ignore: [nope]
    expect: {status: 200, body: {count: 1}, statuses: {200: 1}}
  - name: repeat too much
    request: {method: POST, path: /x, body: "${repeat:99999999999:x}"}
    expect: {status: 200}
`
	_, err := scenario.Parse("bad.yaml", []byte(bad))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`bad.yaml:4: step "no status": expect.status is required`,
		`bad.yaml:7: step "undefined variable": ${nope} is not defined`,
		`bad.yaml:10: step "await a POST": await repeats the request, so only GET and HEAD may await`,
		`bad.yaml:14: step "a race without an outcome": a concurrent step needs an expectation on its outcome`,
		`bad.yaml:18: step "json and body": request: give json or body, not both`,
		`bad.yaml:18: step "json and body": request.path "x": must start with /`,
		`bad.yaml:18: step "json and body": capture: "Bad" is not a valid name`,
		`bad.yaml:18: step "json and body": capture Bad: "id": want a JSON pointer`,
		`bad.yaml:22: step "a bad method and ignore pattern": request.method "FETCH"`,
		`bad.yaml:22: step "a bad method and ignore pattern": ignore: compiling comparison rules: ignore: pointer pattern "nope"`,
		`bad.yaml:22: step "a bad method and ignore pattern": expect.body: key "count" is not a JSON pointer`,
		`bad.yaml:22: step "a bad method and ignore pattern": statuses, at_most, at_least, only and codes are for concurrent steps`,
		`bad.yaml:26: step "repeat too much": ${repeat:99999999999:x}`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := scenario.Parse("typo.yaml", []byte("name: x\nsteps:\n  - name: a\n    reqest: {}\n")); err == nil || !strings.Contains(err.Error(), "typo.yaml: yaml: unmarshal errors:\n  line 4: field reqest not found") {
		t.Errorf("unknown field: %v", err)
	}
	// Two files may not share a scenario name.
	_, err = scenario.Load(fstest.MapFS{"s/a.yaml": {Data: []byte(widgetScenario)}, "s/b.yaml": {Data: []byte(widgetScenario)}}, "s")
	if err == nil || !strings.Contains(err.Error(), `scenario name "widgets" is also used by s/a.yaml`) {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestRequestsAreBuiltAsWritten(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s ct=%q key=%q len=%d %s", r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), b.Len(), cut(b.String())))
		mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	sc := `
name: build
vars: {who: "Zoë \"Z\"", page: "2"}
steps:
  - name: JSON from YAML keeps numbers exactly and escapes strings
    request:
      method: POST
      path: /a?page=${page}
      headers: {Idempotency-Key: "k-${who}"}
      json: {cents: 9007199254740993, ratio: 1.50, big: 0x10, name: "${who}", tags: [a, true, null]}
    expect: {status: 204}
  - name: a raw body with another content type
    request: {method: POST, path: /b, body: "n=${who}", content_type: text/plain}
    expect: {status: 204}
  - name: no content type at all
    request: {method: POST, path: /c, body: "{}", content_type: ""}
    expect: {status: 204}
  - name: a repeated body
    request: {method: POST, path: /d, body: "${repeat:3:ab}"}
    expect: {status: 204}
`
	rep := run(t, suite(t, map[string]string{"b.yaml": sc}), scenario.Target{URL: srv.URL}, scenario.Target{URL: srv.URL}, scenario.Options{})
	if rep.Failed() {
		t.Fatal(text(t, rep))
	}
	want := []string{
		`POST /a?page=2 ct="application/json" key="k-Zoë \"Z\"" len=91 {"cents":9007199254740993,"ratio":1.50,"big":16,"name":"Zoë \"Z\"","tags":["a",true,null]}`,
		`POST /b ct="text/plain" key="" len=10 n=Zoë "Z"`,
		`POST /c ct="" key="" len=2 {}`,
		`POST /d ct="application/json" key="" len=6 ababab`,
	}
	mu.Lock()
	defer mu.Unlock()
	for i, w := range want {
		if i >= len(got)/2 || got[2*i] != w || got[2*i+1] != w {
			t.Errorf("request %d:\n got %v\nwant %s", i, got, w)
			break
		}
	}
}

func cut(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}
