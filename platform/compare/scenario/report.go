package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ficus-project/ficus/platform/compare"
)

// Report is what a run found, per endpoint.
type Report struct {
	Suite string `json:"suite"`
	// A and B name the targets.
	A string `json:"a"`
	B string `json:"b"`
	// Scenarios and Steps count what ran.
	Scenarios int     `json:"scenarios"`
	Steps     int     `json:"steps"`
	Seconds   float64 `json:"seconds"`
	// Endpoints are sorted by endpoint.
	Endpoints []*EndpointReport `json:"endpoints"`
	// Failures are failed expectations (either side), in the order they happened, at most
	// Options.MaxFailures; FailuresOmitted counts the rest.
	Failures        []Failure `json:"failures,omitempty"`
	FailuresOmitted int       `json:"failures_omitted,omitempty"`

	maxFailures int
	byName      map[string]*EndpointReport
}

// EndpointReport is one endpoint's tally.
type EndpointReport struct {
	// Endpoint is the method and path template, e.g. "GET /api/inventory/items/{sku}".
	Endpoint string `json:"endpoint"`
	// Requests counts the request pairs sent (a concurrent step's copies each count).
	Requests int `json:"requests"`
	// Matches and Differences count the compared answers; a concurrent step's answers are
	// compared as one outcome, and setup steps and steps with compare: false are not compared.
	Matches     int `json:"matches"`
	Differences int `json:"differences"`
	// Failures counts failed expectations, on either side.
	Failures int `json:"failures"`
	// Ignored counts differences that ignore rules removed.
	Ignored int `json:"ignored"`
	// Samples are the first Options.MaxSamples differing answers; SamplesOmitted counts the rest.
	Samples        []Mismatch `json:"samples,omitempty"`
	SamplesOmitted int        `json:"samples_omitted,omitempty"`
}

// Mismatch is one step whose two answers differ.
type Mismatch struct {
	Scenario string `json:"scenario"`
	Step     string `json:"step"`
	Where    string `json:"where"`
	// Request is what A was sent; PathB is B's path when it differs (ids of B's own).
	Request     Sent                 `json:"request"`
	PathB       string               `json:"path_b,omitempty"`
	Differences []compare.Difference `json:"differences"`
	Omitted     int                  `json:"omitted,omitempty"`
}

// Failure is one failed expectation.
type Failure struct {
	Scenario string `json:"scenario"`
	Step     string `json:"step"`
	Where    string `json:"where"`
	// Side is the target that failed ("B (inventory)"); empty for the scenario as a whole.
	Side     string `json:"side,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Request  *Sent  `json:"request,omitempty"`
	Message  string `json:"message"`
}

// Sent is a request as sent, its body cut to 512 bytes.
type Sent struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
}

func (s Sent) String() string {
	if s.Body == "" {
		return s.Method + " " + s.Path
	}
	return s.Method + " " + s.Path + " " + s.Body
}

func newReport(suite, a, b string, opts Options) *Report {
	return &Report{Suite: suite, A: a, B: b, maxFailures: opts.MaxFailures, byName: map[string]*EndpointReport{}}
}

// Failed says whether the run found an unexpected difference or a failed expectation.
func (r *Report) Failed() bool {
	if len(r.Failures) > 0 || r.FailuresOmitted > 0 {
		return true
	}
	for _, e := range r.Endpoints {
		if e.Differences > 0 {
			return true
		}
	}
	return false
}

// Totals adds up the endpoints' tallies.
func (r *Report) Totals() EndpointReport {
	var t EndpointReport
	for _, e := range r.Endpoints {
		t.Requests += e.Requests
		t.Matches += e.Matches
		t.Differences += e.Differences
		t.Failures += e.Failures
		t.Ignored += e.Ignored
	}
	return t
}

func (r *Report) endpoint(name string) *EndpointReport {
	e, ok := r.byName[name]
	if !ok {
		e = &EndpointReport{Endpoint: name}
		r.byName[name] = e
		r.Endpoints = append(r.Endpoints, e)
	}
	return e
}

func (r *Report) fail(f Failure) {
	if len(r.Failures) >= r.maxFailures {
		r.FailuresOmitted++
		return
	}
	r.Failures = append(r.Failures, f)
}

func (r *Report) finish(d time.Duration) *Report {
	r.Seconds = d.Seconds()
	slices.SortFunc(r.Endpoints, func(a, b *EndpointReport) int {
		// By path, then method, so an endpoint's operations stand together.
		ma, pa, _ := strings.Cut(a.Endpoint, " ")
		mb, pb, _ := strings.Cut(b.Endpoint, " ")
		if c := strings.Compare(pa, pb); c != 0 {
			return c
		}
		return strings.Compare(ma, mb)
	})
	return r
}

func (e *EndpointReport) sample(max int, m Mismatch) {
	if len(e.Samples) >= max {
		e.SamplesOmitted++
		return
	}
	e.Samples = append(e.Samples, m)
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("writing the comparison report: %w", err)
	}
	return nil
}

// WriteText writes the report for people: a verdict, a table of endpoints, then each
// difference as a diff with the request that caused it, then each failed expectation.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	t := r.Totals()
	verdict := "OK"
	if r.Failed() {
		verdict = fmt.Sprintf("FAILED: %d differing answers, %d failed expectations", t.Differences, len(r.Failures)+r.FailuresOmitted)
	}
	ew.printf("Comparison of A (%s) and B (%s), suite %s: %d scenarios, %d steps, %.1fs\n%s\n\n",
		r.A, r.B, r.Suite, r.Scenarios, r.Steps, r.Seconds, verdict)
	tw := tabwriter.NewWriter(ew, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "ENDPOINT\tREQUESTS\tMATCHES\tDIFFERENCES\tFAILURES\tIGNORED\t\n")
	for _, e := range r.Endpoints {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", e.Endpoint, e.Requests, e.Matches, e.Differences, e.Failures, e.Ignored)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", t.Requests, t.Matches, t.Differences, t.Failures, t.Ignored)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the comparison report: %w", err)
	}
	n := 0
	for _, e := range r.Endpoints {
		for _, m := range e.Samples {
			if n == 0 {
				ew.printf("\nDifferences (A %s, B %s)\n", r.A, r.B)
			}
			n++
			ew.printf("\n%d) %s — scenario %q, step %q (%s)\n", n, e.Endpoint, m.Scenario, m.Step, m.Where)
			ew.printf("   request: %s\n", m.Request)
			if m.PathB != "" {
				ew.printf("   B's path: %s\n", m.PathB)
			}
			for _, d := range m.Differences {
				writeDiff(ew, d)
			}
			if m.Omitted > 0 {
				ew.printf("   … and %d more differences\n", m.Omitted)
			}
		}
		if e.SamplesOmitted > 0 {
			ew.printf("\n   … and %d more differing answers on %s\n", e.SamplesOmitted, e.Endpoint)
		}
	}
	for i, f := range r.Failures {
		if i == 0 {
			ew.printf("\nFailed expectations\n")
		}
		where := f.Side
		if where == "" {
			where = "both sides"
		}
		ew.printf("\n%d) %s on %s — scenario %q, step %q (%s)\n", i+1, orDash(f.Endpoint), where, f.Scenario, f.Step, f.Where)
		if f.Request != nil {
			ew.printf("   request: %s\n", f.Request)
		}
		ew.printf("   %s\n", f.Message)
	}
	if r.FailuresOmitted > 0 {
		ew.printf("\n… and %d more failed expectations\n", r.FailuresOmitted)
	}
	if ew.err != nil {
		return fmt.Errorf("writing the comparison report: %w", ew.err)
	}
	return nil
}

// writeDiff writes one difference as a small unified diff: where, what kind, - A + B.
func writeDiff(ew *errWriter, d compare.Difference) {
	where := d.Part.String()
	switch {
	case d.Part == compare.PartBody && d.Path == "":
		where += " (whole)"
	case d.Path != "":
		where += " " + d.Path
	}
	kind := map[compare.Kind]string{compare.Changed: "changed", compare.OnlyInA: "only in A",
		compare.OnlyInB: "only in B", compare.TypeChanged: "type changed"}[d.Kind]
	ew.printf("   %s: %s", where, kind)
	if d.Note != "" {
		ew.printf(" (%s)", d.Note)
	}
	ew.printf("\n")
	if d.Kind != compare.OnlyInB {
		ew.printf("     - A: %s\n", d.A)
	}
	if d.Kind != compare.OnlyInA {
		ew.printf("     + B: %s\n", d.B)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errWriter keeps the first write error, so the report's many small writes stay readable.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
