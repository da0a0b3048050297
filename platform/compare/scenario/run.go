package scenario

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
)

// Target is one side of a comparison: a system serving the contract under test.
type Target struct {
	// Name names the side in reports ("monolith", "inventory"). Empty means "A" or "B".
	Name string
	// URL is the base URL that steps' paths are appended to.
	URL string
	// SetupURL receives setup steps, which create data the capability under test does not
	// own (payments needs customers, and customers stay in the monolith). Empty means URL.
	SetupURL string
	// CaughtUp, when set, is called after setup steps and before the next compared step. It
	// should return once the target has seen the setup data — a service fed by events may
	// lag behind the monolith that took the setup — and fail if it does not in time.
	CaughtUp func(ctx context.Context) error
	// Client sends the requests. Nil means one of the runner's own. Options.Timeout
	// applies either way.
	Client *http.Client
}

// Options tune a run. The zero value runs every scenario with DefaultRules.
type Options struct {
	// Rules are added to DefaultRules for every step. Default none.
	Rules compare.Rules
	// Endpoints are "METHOD /path/{param}" templates (the OpenAPI paths) that name each
	// request's endpoint in the report. A request no template matches is named after its
	// step's path, ${name} written as {name}. Default none.
	Endpoints []string
	// Check, when set, checks answers of both sides (setup included), for example against
	// the OpenAPI document; an error is a failed expectation. Its signature is that of
	// contract.Validator.CheckResponse. When Endpoints is set, only answers to requests that
	// match one of them are checked: an undocumented path has no contract to check.
	Check func(ctx context.Context, req *http.Request, status int, header http.Header, body []byte) error
	// Scenarios, when not empty, runs only the scenarios of these names.
	Scenarios []string
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// CatchUpTimeout bounds each call of Target.CaughtUp. Default 30s.
	CatchUpTimeout time.Duration
	// MaxSamples bounds the differences kept per endpoint; more are only counted. Default 20.
	MaxSamples int
	// MaxFailures bounds the failed expectations kept; more are only counted. Default 500.
	MaxFailures int
	// MaxResponse bounds each answer's body; a longer one is a failure. Default 8 MiB.
	MaxResponse int64
}

// DefaultRules are the comparison rules every run starts from: ids are UUIDs that each side
// generates on its own (captured and paired, wherever they appear), and two timestamps are
// equal whatever instant they name (each side stamps its own clock).
func DefaultRules() compare.Rules {
	return compare.Rules{
		Capture:    []compare.ValueRule{{Class: compare.ClassUUID}},
		Equivalent: []compare.ValueRule{{Class: compare.ClassRFC3339}},
	}
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = 30 * time.Second
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 20
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 500
	}
	if o.MaxResponse <= 0 {
		o.MaxResponse = 8 << 20
	}
}

// Run runs the suite's scenarios against both targets, one step at a time on A then on B,
// and reports what differed and what failed. The error is for a run that could not be
// made (bad targets or options, ctx ended); differences and failures are in the report.
func Run(ctx context.Context, suite *Suite, a, b Target, opts Options) (*Report, error) {
	opts.setDefaults()
	var errs []error
	for i, t := range []*Target{&a, &b} {
		label := [...]string{"A", "B"}[i]
		if t.Name == "" {
			t.Name = label
		}
		if t.URL == "" {
			errs = append(errs, fmt.Errorf("target %s: no URL", label))
		}
		for _, u := range []string{t.URL, t.SetupURL} {
			if pu, err := url.Parse(u); u != "" && (err != nil || pu.Scheme == "" || pu.Host == "") {
				errs = append(errs, fmt.Errorf("target %s: %q is not an absolute URL", label, u))
			}
		}
	}
	for _, name := range opts.Scenarios {
		if !slices.ContainsFunc(suite.Scenarios, func(s *Scenario) bool { return s.Name == name }) {
			errs = append(errs, fmt.Errorf("no scenario %q in suite %s", name, suite.Name))
		}
	}
	endpoints, err := compare.NewEndpoints(opts.Endpoints)
	if err != nil {
		errs = append(errs, err)
	}
	r := &runner{opts: opts, endpoints: endpoints, comparers: map[*Step]*compare.Comparer{}}
	base := DefaultRules().Merge(opts.Rules)
	for _, sc := range suite.Scenarios {
		scRules := base.Merge(sc.Rules)
		for _, st := range sc.Steps {
			c, err := compare.New(scRules.Merge(st.Rules))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", st.Where, err))
				continue
			}
			r.comparers[st] = c
		}
	}
	if r.plain, err = compare.New(compare.Rules{Headers: []string{}}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("running suite %s: %w", suite.Name, errors.Join(errs...))
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64 // concurrent steps reuse their connections
	defer transport.CloseIdleConnections()
	own := &http.Client{Transport: transport,
		// A redirect is an answer to compare, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r.a = &side{label: "A", Target: a, client: cmp.Or(a.Client, own)}
	r.b = &side{label: "B", Target: b, client: cmp.Or(b.Client, own)}
	r.report = newReport(suite.Name, a.Name, b.Name, opts)

	start := time.Now()
	for _, sc := range suite.Scenarios {
		if len(opts.Scenarios) > 0 && !slices.Contains(opts.Scenarios, sc.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return r.report.finish(time.Since(start)), fmt.Errorf("running suite %s: %w", suite.Name, err)
		}
		r.scenario(ctx, sc)
	}
	return r.report.finish(time.Since(start)), nil
}

type runner struct {
	opts      Options
	endpoints *compare.Endpoints
	comparers map[*Step]*compare.Comparer
	plain     *compare.Comparer // for expected values: no rules
	ids       compare.IDs
	a, b      *side
	report    *Report
}

// side is one target during a scenario, with its own values of the variables.
type side struct {
	Target
	label  string
	client *http.Client
	vars   map[string]string
}

func (s *side) display() string {
	if s.Name == s.label {
		return s.label
	}
	return s.label + " (" + s.Name + ")"
}

func (r *runner) scenario(ctx context.Context, sc *Scenario) {
	r.report.Scenarios++
	for _, s := range []*side{r.a, r.b} {
		s.vars = maps.Clone(sc.Vars)
		if s.vars == nil {
			s.vars = map[string]string{}
		}
	}
	afterSetup := false
	for _, st := range sc.Steps {
		if ctx.Err() != nil {
			return
		}
		if st.Setup {
			afterSetup = true
		} else if afterSetup {
			afterSetup = false
			if !r.catchUp(ctx, sc, st) {
				return
			}
		}
		r.report.Steps++
		if !r.step(ctx, sc, st) {
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where,
				Message: "scenario stopped: later steps need what this step failed to provide"})
			return
		}
	}
}

// catchUp waits until each target has caught up with the setup data.
func (r *runner) catchUp(ctx context.Context, sc *Scenario, st *Step) bool {
	ok := true
	for _, s := range []*side{r.a, r.b} {
		if s.CaughtUp == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.opts.CatchUpTimeout)
		err := s.CaughtUp(cctx)
		cancel()
		if err != nil {
			ok = false
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: s.display(),
				Message: fmt.Sprintf("scenario stopped: the target did not catch up with the setup data within %s: %v", r.opts.CatchUpTimeout, err)})
		}
	}
	return ok
}

// exchange is one request and its answer on one side.
type exchange struct {
	req      Sent
	resp     compare.Response
	err      error    // the request could not be sent or read
	fatal    error    // the request could not even be built
	failures []string // expectations the answer failed
}

// step runs one step on both sides. It returns false when the scenario cannot go on.
func (r *runner) step(ctx context.Context, sc *Scenario, st *Step) bool {
	if st.Concurrent > 0 {
		return r.concurrent(ctx, sc, st)
	}
	xa := r.exchange(ctx, r.a, st, r.a.vars)
	xb := r.exchange(ctx, r.b, st, r.b.vars)
	ep := r.report.endpoint(r.endpointOf(st, xa.req))
	ep.Requests++
	cont := true
	for _, p := range []struct {
		s *side
		x *exchange
	}{{r.a, &xa}, {r.b, &xb}} {
		if p.x.fatal != nil {
			cont = false
		}
		for _, f := range p.x.failures {
			ep.Failures++
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: p.s.display(),
				Endpoint: ep.Endpoint, Request: ptr(p.x.req), Message: f})
		}
	}
	if !cont {
		return false
	}
	if st.Compare && !st.Setup && xa.err == nil && xb.err == nil {
		res := r.comparers[st].Compare(xa.resp, xb.resp, &r.ids)
		ep.Ignored += res.Ignored
		if res.Equal() {
			ep.Matches++
		} else {
			ep.Differences++
			ep.sample(r.opts.MaxSamples, Mismatch{Scenario: sc.Name, Step: st.Name, Where: st.Where,
				Request: xa.req, PathB: pathIfOther(xa.req.Path, xb.req.Path), Differences: res.Differences, Omitted: res.Omitted})
		}
	}
	return r.capture(sc, st, ep, &xa, &xb)
}

func ptr[T any](v T) *T { return &v }

func pathIfOther(a, b string) string {
	if a == b {
		return ""
	}
	return b
}

// capture stores the step's captures in each side's variables and pairs them as equal.
func (r *runner) capture(sc *Scenario, st *Step, ep *EndpointReport, xa, xb *exchange) bool {
	ok := true
	for _, name := range slices.Sorted(maps.Keys(st.Capture)) {
		from := st.Capture[name]
		va, errA := captured(xa, from)
		vb, errB := captured(xb, from)
		for _, p := range []struct {
			s   *side
			x   *exchange
			err error
		}{{r.a, xa, errA}, {r.b, xb, errB}} {
			if p.err != nil {
				ok = false
				ep.Failures++
				r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: p.s.display(),
					Endpoint: ep.Endpoint, Request: ptr(p.x.req), Message: fmt.Sprintf("capture %s from %s: %v", name, from, p.err)})
			}
		}
		if errA != nil || errB != nil {
			continue
		}
		r.a.vars[name], r.b.vars[name] = va, vb
		if err := r.ids.Learn(va, vb); err != nil {
			ep.Failures++
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: r.b.display(),
				Endpoint: ep.Endpoint, Request: ptr(xb.req),
				Message: fmt.Sprintf("capture %s: the sides' values do not correspond: %v", name, err)})
		}
	}
	return ok
}

// captured reads a value from an answer: a header's, or a JSON value's (a string's
// content, other values as JSON text).
func captured(x *exchange, from string) (string, error) {
	if x.err != nil {
		return "", x.err
	}
	if h, ok := strings.CutPrefix(from, "header:"); ok {
		v := x.resp.Header.Get(h)
		if v == "" {
			return "", fmt.Errorf("no %s header", h)
		}
		return v, nil
	}
	raw, err := compare.Lookup(x.resp.Body, from)
	if err != nil {
		return "", err
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	return string(raw), nil
}

// built is a request ready to send, every ${name} expanded.
type built struct {
	method, url, path string
	header            http.Header
	body              []byte
}

func (r *runner) build(s *side, st *Step, vars map[string]string) (built, error) {
	p, err := expand(st.Request.Path, vars)
	if err != nil {
		return built{}, fmt.Errorf("request.path: %w", err)
	}
	base := s.URL
	if st.Setup && s.SetupURL != "" {
		base = s.SetupURL
	}
	b := built{method: st.Request.Method, path: p, url: strings.TrimSuffix(base, "/") + p, header: http.Header{}}
	switch {
	case st.Request.JSON != nil:
		if b.body, err = toJSON(st.Request.JSON, vars); err != nil {
			return built{}, fmt.Errorf("request.json: %w", err)
		}
	case st.Request.Body != nil:
		body, err := expand(*st.Request.Body, vars)
		if err != nil {
			return built{}, fmt.Errorf("request.body: %w", err)
		}
		b.body = []byte(body)
	}
	if b.body != nil {
		b.header.Set("Content-Type", "application/json")
	}
	if st.Request.ContentType != nil {
		b.header.Del("Content-Type")
		if *st.Request.ContentType != "" {
			b.header.Set("Content-Type", *st.Request.ContentType)
		}
	}
	for k, v := range st.Request.Headers {
		hv, err := expand(v, vars)
		if err != nil {
			return built{}, fmt.Errorf("request.headers.%s: %w", k, err)
		}
		b.header.Set(k, hv)
	}
	return b, nil
}

// exchange sends a step's request to one side and checks the answer; with Await it
// repeats until the expectations hold or the time is up.
func (r *runner) exchange(ctx context.Context, s *side, st *Step, vars map[string]string) exchange {
	b, err := r.build(s, st, vars)
	if err != nil {
		return exchange{req: Sent{Method: st.Request.Method, Path: st.Request.Path}, fatal: err, failures: []string{err.Error()}}
	}
	deadline := time.Now().Add(st.Await)
	wait := 10 * time.Millisecond
	for {
		x := r.send(ctx, s, b)
		x.failures = r.check(st.Expect, &x, vars)
		if st.Await == 0 || len(x.failures) == 0 || !time.Now().Add(wait).Before(deadline) {
			if st.Await > 0 && len(x.failures) > 0 {
				x.failures = append(x.failures, fmt.Sprintf("(still failing after awaiting %s)", st.Await))
			}
			return x
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return x
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (r *runner) send(ctx context.Context, s *side, b built) exchange {
	x := exchange{req: Sent{Method: b.method, Path: b.path, Body: cutString(string(b.body), 512)}}
	var body io.Reader
	if b.body != nil {
		body = bytes.NewReader(b.body)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, b.method, b.url, body)
	if err != nil {
		x.err = err
		return x
	}
	req.Header = b.header.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		x.err = err
		return x
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.opts.MaxResponse+1))
	if err == nil && int64(len(data)) > r.opts.MaxResponse {
		err = fmt.Errorf("the answer's body is over %d bytes", r.opts.MaxResponse)
	}
	if err != nil {
		x.err = fmt.Errorf("reading the answer: %w", err)
		return x
	}
	x.resp = compare.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if r.opts.Check != nil && (r.endpoints.Len() == 0 || r.endpointMatches(b.method, b.path)) {
		if err := r.opts.Check(ctx, req, resp.StatusCode, resp.Header, data); err != nil {
			x.failures = append(x.failures, fmt.Sprintf("the answer breaks the contract: %v", err))
		}
	}
	return x
}

// check lists the expectations an answer fails.
func (r *runner) check(e Expect, x *exchange, vars map[string]string) []string {
	out := x.failures // the contract check's, if any
	if x.err != nil {
		return append(out, fmt.Sprintf("request failed: %v", x.err))
	}
	if e.Status != 0 && x.resp.Status != e.Status {
		out = append(out, fmt.Sprintf("status %d, want %d (body %s)", x.resp.Status, e.Status, cutString(strings.TrimSpace(string(x.resp.Body)), 300)))
	}
	if e.Code != "" {
		if got := problemCode(x.resp.Body); got != e.Code {
			out = append(out, fmt.Sprintf("code %q, want %q", got, e.Code))
		}
	}
	for _, f := range e.Body {
		want, err := toJSON(f.Value, vars)
		if err != nil {
			out = append(out, fmt.Sprintf("expect.body %s: %v", f.Pointer, err))
			continue
		}
		got, err := compare.Lookup(x.resp.Body, f.Pointer)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v, want %s", f.Pointer, err, want))
			continue
		}
		if res := r.plain.Compare(compare.Response{Body: got}, compare.Response{Body: want}, nil); !res.Equal() {
			out = append(out, fmt.Sprintf("%s is %s, want %s", f.Pointer, cutString(string(got), 200), want))
		}
	}
	for _, p := range e.Absent {
		if got, err := compare.Lookup(x.resp.Body, p); err == nil {
			out = append(out, fmt.Sprintf("%s is %s, want no value", p, cutString(string(got), 200)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.Headers)) {
		v := e.Headers[name]
		got := strings.Join(x.resp.Header.Values(name), ", ")
		switch {
		case v == nil && got != "":
			out = append(out, fmt.Sprintf("header %s is %q, want none", name, got))
		case v != nil:
			want, err := expand(*v, vars)
			if err != nil {
				out = append(out, fmt.Sprintf("expect.headers.%s: %v", name, err))
			} else if got != want {
				out = append(out, fmt.Sprintf("header %s is %q, want %q", name, got, want))
			}
		}
	}
	return out
}

// problemCode returns a problem body's code, or "".
func problemCode(body []byte) string {
	raw, err := compare.Lookup(body, "/code")
	if err != nil {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	return s
}

// outcome is what a concurrent step's answers on one side add up to.
type outcome struct {
	hist     map[histKey]int
	failures map[string]int // per-answer failures, counted
	req      Sent           // the first copy, for the report
	fatal    error
}

// histKey is an answer's status and problem code; status 0 is a request that failed.
type histKey struct {
	status int
	code   string
}

func (o *outcome) statuses() map[int]int {
	out := map[int]int{}
	for k, n := range o.hist {
		out[k.status] += n
	}
	return out
}

// histogram renders the answers' statuses and codes, e.g. "201×50, 409 insufficient_stock×150".
func (o *outcome) histogram() string {
	keys := slices.SortedFunc(maps.Keys(o.hist), func(a, b histKey) int {
		if a.status != b.status {
			return a.status - b.status
		}
		return strings.Compare(a.code, b.code)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		label := strconv.Itoa(k.status)
		if k.status == 0 {
			label = "error"
		}
		if k.code != "" {
			label += " " + k.code
		}
		parts[i] = fmt.Sprintf("%s×%d", label, o.hist[k])
	}
	return strings.Join(parts, ", ")
}

// check lists the outcome's failed expectations.
func (o *outcome) check(e Expect, n int) []string {
	var out []string
	for _, f := range slices.Sorted(maps.Keys(o.failures)) {
		out = append(out, fmt.Sprintf("%d of %d answers: %s", o.failures[f], n, f))
	}
	got := o.statuses()
	if e.Statuses != nil && !maps.Equal(got, e.Statuses) {
		out = append(out, fmt.Sprintf("statuses %s, want %s", counts(got), counts(e.Statuses)))
	}
	for _, st := range slices.Sorted(maps.Keys(e.AtMost)) {
		if got[st] > e.AtMost[st] {
			out = append(out, fmt.Sprintf("%d answers with status %d, want at most %d", got[st], st, e.AtMost[st]))
		}
	}
	for _, st := range slices.Sorted(maps.Keys(e.AtLeast)) {
		if got[st] < e.AtLeast[st] {
			out = append(out, fmt.Sprintf("%d answers with status %d, want at least %d", got[st], st, e.AtLeast[st]))
		}
	}
	if e.Only != nil {
		for _, st := range slices.Sorted(maps.Keys(got)) {
			if !slices.Contains(e.Only, st) {
				out = append(out, fmt.Sprintf("%d answers with status %d, want only %v", got[st], st, e.Only))
			}
		}
	}
	codes := map[string]int{}
	for k, n := range o.hist {
		if k.code != "" {
			codes[k.code] += n
		}
	}
	for _, c := range slices.Sorted(maps.Keys(e.Codes)) {
		if codes[c] != e.Codes[c] {
			out = append(out, fmt.Sprintf("%d answers with code %s, want %d", codes[c], c, e.Codes[c]))
		}
	}
	return out
}

func counts(m map[int]int) string {
	parts := []string{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// concurrent sends a step's copies at once to each side (A first, then B) and checks the
// outcome; the two outcomes are compared as a whole, since the order of the answers is not.
func (r *runner) concurrent(ctx context.Context, sc *Scenario, st *Step) bool {
	oa := r.burst(ctx, r.a, st)
	ob := r.burst(ctx, r.b, st)
	ep := r.report.endpoint(r.endpointOf(st, oa.req))
	ep.Requests += st.Concurrent
	for _, p := range []struct {
		s *side
		o *outcome
	}{{r.a, &oa}, {r.b, &ob}} {
		if p.o.fatal != nil {
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: p.s.display(),
				Endpoint: ep.Endpoint, Request: ptr(p.o.req), Message: p.o.fatal.Error()})
			return false
		}
		for _, f := range p.o.check(st.Expect, st.Concurrent) {
			ep.Failures++
			r.report.fail(Failure{Scenario: sc.Name, Step: st.Name, Where: st.Where, Side: p.s.display(),
				Endpoint: ep.Endpoint, Request: ptr(p.o.req), Message: f})
		}
	}
	if st.Compare && !st.Setup {
		ha, hb := oa.histogram(), ob.histogram()
		if ha == hb {
			ep.Matches++
		} else {
			ep.Differences++
			ep.sample(r.opts.MaxSamples, Mismatch{Scenario: sc.Name, Step: st.Name, Where: st.Where, Request: oa.req,
				Differences: []compare.Difference{{Part: compare.PartStatus, Kind: compare.Changed, A: ha, B: hb,
					Note: fmt.Sprintf("outcome of %d concurrent requests", st.Concurrent)}}})
		}
	}
	return true
}

// burst sends the step's copies to one side at once and gathers the outcome.
func (r *runner) burst(ctx context.Context, s *side, st *Step) outcome {
	o := outcome{hist: map[histKey]int{}, failures: map[string]int{}}
	reqs := make([]built, st.Concurrent)
	for i := range reqs {
		vars := maps.Clone(s.vars)
		vars["i"] = strconv.Itoa(i)
		b, err := r.build(s, st, vars)
		if err != nil {
			o.fatal = err
			return o
		}
		reqs[i] = b
	}
	o.req = Sent{Method: reqs[0].method, Path: reqs[0].path, Body: cutString(string(reqs[0].body), 512)}
	// Per-answer expectations: the aggregate ones are checked on the whole outcome.
	each := Expect{Status: st.Expect.Status, Code: st.Expect.Code, Body: st.Expect.Body, Absent: st.Expect.Absent, Headers: st.Expect.Headers}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start // release them together, so they really compete
			x := r.send(ctx, s, reqs[i])
			fails := r.check(each, &x, s.vars)
			key := histKey{}
			if x.err == nil {
				key = histKey{x.resp.Status, problemCode(x.resp.Body)}
			}
			mu.Lock()
			defer mu.Unlock()
			o.hist[key]++
			for _, f := range fails {
				o.failures[f]++
			}
		}()
	}
	close(start)
	wg.Wait()
	return o
}
