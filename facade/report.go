package facade

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/dryrun"
)

// ShadowReport is one route's shadow report (GET /api/shadow): what was compared, what
// differed, what was dropped, per endpoint.
type ShadowReport struct {
	Route     string `json:"route"`
	Candidate string `json:"candidate"`
	// Samples counts the samples that were compared or failed on the candidate; Matches,
	// Differences, Lag and Errors split them: equal answers, real differences, differences
	// a re-check explained (the candidate caught up), and candidate failures (no answer).
	Samples     int64 `json:"samples"`
	Matches     int64 `json:"matches"`
	Differences int64 `json:"differences"`
	Lag         int64 `json:"lag"`
	Errors      int64 `json:"errors"`
	// Dropped counts the samples never compared, DroppedBy by reason.
	Dropped   int64            `json:"dropped"`
	DroppedBy map[string]int64 `json:"dropped_by,omitempty"`
	// DiffRate is Differences over the compared samples (Matches + Differences + Lag).
	DiffRate  float64          `json:"diff_rate"`
	Endpoints []EndpointReport `json:"endpoints"`
}

// EndpointReport is one endpoint's part of a shadow report.
type EndpointReport struct {
	// Endpoint is the method and path template ("GET /api/inventory/items/{sku}").
	Endpoint    string `json:"endpoint"`
	Samples     int64  `json:"samples"`
	Matches     int64  `json:"matches"`
	Differences int64  `json:"differences"`
	Lag         int64  `json:"lag"`
	Errors      int64  `json:"errors"`
	// Noise lists what the endpoint's learning found varying on its own in the primary's
	// answers ("/served_at", "header:Date"), ignored from then on.
	Noise []string `json:"noise,omitempty"`
	// TopFields are the fields that differed most often, most first.
	TopFields []FieldCount `json:"top_fields,omitempty"`
	// Recent are the latest differing samples, newest first.
	Recent []DiffSample `json:"recent,omitempty"`
}

// FieldCount is how often a field differed: "body /name", "status", "header Location".
type FieldCount struct {
	Field string `json:"field"`
	Count int64  `json:"count"`
}

// DiffSample is one differing sample in full, secrets redacted: the values of secret headers
// (alwaysRedacted and facade.shadow.redact_headers) and of JSON fields whose names say
// password, secret, token, api key or credential.
type DiffSample struct {
	Time      time.Time `json:"time"`
	Route     string    `json:"route"`
	Endpoint  string    `json:"endpoint"`
	RequestID string    `json:"request_id"`
	// Request is what the client sent (the candidate got the same).
	Request SampledRequest `json:"request"`
	// Primary and Candidate are the two answers; Candidate is the re-check's when Rechecked.
	Primary   SampledResponse `json:"primary"`
	Candidate SampledResponse `json:"candidate"`
	// Rechecked says the candidate was asked again after the route's recheck delay, and
	// still differed.
	Rechecked   bool                 `json:"rechecked,omitempty"`
	Differences []compare.Difference `json:"differences"`
	Omitted     int                  `json:"omitted,omitempty"`
}

// SampledRequest is a request as a report shows it.
type SampledRequest struct {
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query, if any
	Header http.Header `json:"header,omitempty"`
	Body   string      `json:"body,omitempty"`
}

// SampledResponse is an answer as a report shows it.
type SampledResponse struct {
	Backend string      `json:"backend"`
	Status  int         `json:"status,omitempty"`
	Header  http.Header `json:"header,omitempty"`
	Body    string      `json:"body,omitempty"`
	// Error says why there is no answer.
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Bounds of what a report keeps.
const (
	// sampleBodyBytes is how much of each body a DiffSample shows.
	sampleBodyBytes = 4 << 10
	// maxFieldsTracked bounds the distinct differing fields counted per endpoint.
	maxFieldsTracked = 256
	// topFields is how many of them a report shows.
	topFields = 10
	// alwaysLearn is how many of an endpoint's first samples always learn noise, when the
	// route learns at all.
	alwaysLearn = 10
	// otherEndpoint collects a route's samples beyond its endpoint limit.
	otherEndpoint = "(other endpoints)"
)

// alwaysRedacted are the headers whose values a report never shows.
var alwaysRedacted = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", dryrun.Header, headerAdminToken}

// shadowReport accumulates one route's shadow outcomes. Safe for concurrent use.
type shadowReport struct {
	route     string
	candidate string
	rules     compare.Rules
	// ids pairs the ids each side generated, when the shadow captures any.
	ids *compare.IDs

	mu           sync.Mutex
	maxEndpoints int
	maxSamples   int
	endpoints    map[string]*endpointState
	order        []*endpointState
	dropped      map[string]int64
}

// endpointState is one endpoint's counts, samples and learnt noise.
type endpointState struct {
	name                                 string
	samples, matches, diffs, lag, errors int64
	fields                               map[string]int64
	recent                               []DiffSample // a ring, oldest overwritten
	next                                 int
	noise                                compare.Noise
	comparer                             atomic.Pointer[compare.Comparer]
	learnt                               atomic.Int64 // samples learnt on
}

func newShadowReport(route string, sh *config.Shadow, fs *config.FacadeShadow) *shadowReport {
	r := &shadowReport{route: route, candidate: sh.To, rules: sh.Rules(), maxEndpoints: fs.Endpoints,
		maxSamples: fs.Samples, endpoints: map[string]*endpointState{}, dropped: map[string]int64{}}
	if len(sh.Capture) > 0 {
		r.ids = &compare.IDs{Max: 10_000}
	}
	return r
}

// endpoint returns the state of the endpoint named name, made on first use, or the
// route's catch-all once it has as many endpoints as it may.
func (r *shadowReport) endpoint(name string) (*endpointState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.endpoints[name]; ok {
		return e, nil
	}
	if len(r.endpoints) >= r.maxEndpoints {
		name = otherEndpoint
		if e, ok := r.endpoints[name]; ok {
			return e, nil
		}
	}
	c, err := compare.New(r.rules)
	if err != nil {
		return nil, err // validated with the config; cannot happen
	}
	e := &endpointState{name: name, fields: map[string]int64{}}
	e.comparer.Store(c)
	r.endpoints[name] = e
	r.order = append(r.order, e)
	return e, nil
}

// learn adds what differed between two answers of the primary to the endpoint's noise,
// and recompiles its comparer when something was new. It returns what was new.
func (r *shadowReport) learn(e *endpointState, res compare.Result) []string {
	e.learnt.Add(1)
	added, _ := e.noise.Learn(res)
	if len(added) > 0 {
		if c, err := compare.New(e.noise.Rules(r.rules)); err == nil {
			e.comparer.Store(c)
		}
	}
	return added
}

// drop counts a sample that was not compared.
func (r *shadowReport) drop(reason string) {
	r.mu.Lock()
	r.dropped[reason]++
	r.mu.Unlock()
}

// Outcomes of a sample.
const (
	outcomeMatch = "match"
	outcomeDiff  = "difference"
	outcomeLag   = "lag"
	outcomeError = "error"
)

// record counts a sample's outcome and keeps it in full when it differed.
func (r *shadowReport) record(e *endpointState, outcome string, s *DiffSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.samples++
	switch outcome {
	case outcomeMatch:
		e.matches++
		return
	case outcomeLag:
		e.lag++
		return
	case outcomeError:
		e.errors++
	case outcomeDiff:
		e.diffs++
		for _, d := range s.Differences {
			field := fieldName(d)
			if _, ok := e.fields[field]; ok || len(e.fields) < maxFieldsTracked {
				e.fields[field]++
			}
		}
	}
	if len(e.recent) < r.maxSamples {
		e.recent = append(e.recent, *s)
		return
	}
	e.recent[e.next] = *s
	e.next = (e.next + 1) % len(e.recent)
}

// fieldName names the field a difference is in, array indexes written "*" so that the same
// field of every element adds up: "body /items/*/name", "status", "header Location".
func fieldName(d compare.Difference) string {
	switch d.Part {
	case compare.PartStatus:
		return "status"
	case compare.PartHeader:
		return "header " + d.Path
	}
	rule, _ := compare.NoiseRule(d)
	if rule == "" {
		return "body (whole)"
	}
	return "body " + rule
}

// snapshot returns the report as the admin API shows it.
func (r *shadowReport) snapshot() ShadowReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := ShadowReport{Route: r.route, Candidate: r.candidate, Endpoints: make([]EndpointReport, 0, len(r.order))}
	if len(r.dropped) > 0 {
		out.DroppedBy = make(map[string]int64, len(r.dropped))
		for k, v := range r.dropped {
			out.DroppedBy[k] = v
			out.Dropped += v
		}
	}
	for _, e := range r.order {
		er := EndpointReport{Endpoint: e.name, Samples: e.samples, Matches: e.matches, Differences: e.diffs,
			Lag: e.lag, Errors: e.errors, Noise: e.noise.Learnt()}
		for f, n := range e.fields {
			er.TopFields = append(er.TopFields, FieldCount{Field: f, Count: n})
		}
		slices.SortFunc(er.TopFields, func(a, b FieldCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Field, b.Field))
		})
		if len(er.TopFields) > topFields {
			er.TopFields = er.TopFields[:topFields]
		}
		// Newest first: the ring's slots from the one before next, backwards.
		for i := range e.recent {
			er.Recent = append(er.Recent, e.recent[(e.next-1-i+2*len(e.recent))%len(e.recent)])
		}
		out.Endpoints = append(out.Endpoints, er)
		out.Samples += e.samples
		out.Matches += e.matches
		out.Differences += e.diffs
		out.Lag += e.lag
		out.Errors += e.errors
	}
	slices.SortFunc(out.Endpoints, func(a, b EndpointReport) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	if n := out.Matches + out.Differences + out.Lag; n > 0 {
		out.DiffRate = float64(out.Differences) / float64(n)
	}
	return out
}

// redact returns a copy of h with the values of the redacted headers replaced.
func redact(h http.Header, extra []string) http.Header {
	if len(h) == 0 {
		return nil
	}
	out := h.Clone()
	for _, list := range [][]string{alwaysRedacted, extra} {
		for _, k := range list {
			k = http.CanonicalHeaderKey(k)
			if vs, ok := out[k]; ok {
				for i := range vs {
					vs[i] = scenario.Redacted // what a replay knows not to send
				}
			}
		}
	}
	return out
}

// cutBody renders a body for a report, at most sampleBodyBytes, cut on a rune.
func cutBody(b []byte) string {
	if len(b) <= sampleBodyBytes {
		return string(b)
	}
	n := sampleBodyBytes
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "…"
}
