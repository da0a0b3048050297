// Package scenario runs declarative request sequences against two systems that should
// behave alike — the monolith and a service extracted from it — and reports, per endpoint,
// where their answers differ and which expectations either side failed.
//
// A scenario is a YAML file of steps. Each step sends one request (or N concurrent copies
// of it) to both sides, checks each side's answer against the step's expectations, compares
// the two answers with package compare, and may capture values (ids the sides generated)
// for later steps as ${name}. docs/compare.md describes the format.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ficus-project/ficus/platform/compare"
)

// Bounds of the format.
const (
	// MaxConcurrent bounds a concurrent step's copies.
	MaxConcurrent = 1000
	// MaxAwait bounds how long a step may poll for its expectations.
	MaxAwait = time.Minute
	// MaxRepeat bounds ${repeat:N:text} expansions, in bytes.
	MaxRepeat = 16 << 20
	// maxFileSize bounds a scenario file.
	maxFileSize = 1 << 20
)

// Suite is an ordered set of scenarios, run one after another against the same two systems.
type Suite struct {
	// Name names the suite in reports (by default the directories it was loaded from).
	Name      string
	Scenarios []*Scenario
}

// Scenario is one file's sequence of steps. Its steps share variables; scenarios do not.
type Scenario struct {
	// Name is the scenario's name (by default its file name without .yaml).
	Name string
	// About says what the scenario proves.
	About string
	// File is where the scenario was loaded from.
	File string
	// Vars are constants the steps may use as ${name}, the same on both sides.
	Vars map[string]string
	// Rules are comparison rules added to the runner's for this scenario's steps.
	Rules compare.Rules
	Steps []*Step
}

// Step is one request (or N concurrent copies) sent to both sides.
type Step struct {
	// Name says what the step does; Where is file:line.
	Name, Where string
	// Setup steps create data the capability under test does not own (customers, for
	// payments). They go to each Target's SetupURL and their answers are checked but not
	// compared.
	Setup bool
	// Request is what is sent, with ${name} references still in it.
	Request Request
	// Concurrent, when above zero, sends that many copies at once; ${i} is each copy's index.
	Concurrent int
	// Expect is what each side's answer must satisfy.
	Expect Expect
	// Capture names values of the answer for later steps: name → "/json/pointer" or
	// "header:Name". Each side keeps its own value, and the pair is learnt as equal.
	Capture map[string]string
	// Rules are comparison rules added for this step only (typically Ignore).
	Rules compare.Rules
	// Compare is false for steps whose two answers may rightly differ.
	Compare bool
	// Await, when set, repeats the (safe) request on each side until its expectations hold,
	// for a system that catches up asynchronously; after it the step fails.
	Await time.Duration
	// Endpoint, when set, names the step's endpoint in the report ("GET /api/items/{sku}").
	Endpoint string
}

// Request is a step's request.
type Request struct {
	Method string
	// Path is the path and query, e.g. /api/orders?customer_id=${customer}.
	Path    string
	Headers map[string]string
	// JSON is a body written as YAML, sent as JSON; strings in it may hold ${name}.
	JSON *yaml.Node
	// Body is a raw body (for malformed or oversized input); it may hold ${name} and
	// ${repeat:N:text}.
	Body *string
	// ContentType overrides the Content-Type, which is application/json when there is a
	// body; "" sends none.
	ContentType *string
}

// Expect is what one answer, or the answers of a concurrent step, must satisfy.
type Expect struct {
	// Status is the status every answer must have (0: any).
	Status int
	// Code is the problem code (the body's /code) every answer must have.
	Code string
	// Body lists JSON pointers and the values expected there, in file order.
	Body []Field
	// Absent lists JSON pointers that must not exist.
	Absent []string
	// Headers maps header names to expected values; nil means the header must be absent.
	Headers map[string]*string

	// For concurrent steps: exact counts per status, bounds per status, the statuses
	// allowed at all, and exact counts per problem code.
	Statuses map[int]int
	AtMost   map[int]int
	AtLeast  map[int]int
	Only     []int
	Codes    map[string]int
}

// Field is one expected body value.
type Field struct {
	Pointer string
	Value   *yaml.Node
}

// Load reads a suite from the *.yaml files of dirs in fsys, each directory's files in name
// order. It reports every problem of every file at once, each with file:line.
func Load(fsys fs.FS, dirs ...string) (*Suite, error) {
	s := &Suite{Name: strings.Join(dirs, "+")}
	var errs []error
	for _, dir := range dirs {
		files, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("loading scenarios from %s: %w", dir, err)
		}
		if len(files) == 0 {
			errs = append(errs, fmt.Errorf("%s: no scenario files (*.yaml)", dir))
		}
		for _, f := range files {
			data, err := fs.ReadFile(fsys, f)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading %s: %w", f, err))
				continue
			}
			sc, err := Parse(f, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.Scenarios = append(s.Scenarios, sc)
		}
	}
	names := map[string]string{}
	for _, sc := range s.Scenarios {
		if other, ok := names[sc.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: scenario name %q is also used by %s", sc.File, sc.Name, other))
		}
		names[sc.Name] = sc.File
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// file is a scenario file as written.
type file struct {
	Name  string            `yaml:"name"`
	About string            `yaml:"about"`
	Vars  map[string]string `yaml:"vars"`
	Rules compare.Rules     `yaml:"rules"`
	Steps []stepSpec        `yaml:"steps"`
}

type stepSpec struct {
	Name       string            `yaml:"name"`
	Setup      bool              `yaml:"setup"`
	Request    requestSpec       `yaml:"request"`
	Concurrent int               `yaml:"concurrent"`
	Expect     expectSpec        `yaml:"expect"`
	Capture    map[string]string `yaml:"capture"`
	Ignore     []string          `yaml:"ignore"`
	Compare    *bool             `yaml:"compare"`
	Await      string            `yaml:"await"`
	Endpoint   string            `yaml:"endpoint"`
}

type requestSpec struct {
	Method      string            `yaml:"method"`
	Path        string            `yaml:"path"`
	Headers     map[string]string `yaml:"headers"`
	JSON        yaml.Node         `yaml:"json"`
	Body        *string           `yaml:"body"`
	ContentType *string           `yaml:"content_type"`
}

type expectSpec struct {
	Status   int                `yaml:"status"`
	Code     string             `yaml:"code"`
	Body     yaml.Node          `yaml:"body"`
	Absent   []string           `yaml:"absent"`
	Headers  map[string]*string `yaml:"headers"`
	Statuses map[int]int        `yaml:"statuses"`
	AtMost   map[int]int        `yaml:"at_most"`
	AtLeast  map[int]int        `yaml:"at_least"`
	Only     []int              `yaml:"only"`
	Codes    map[string]int     `yaml:"codes"`
}

var (
	varName  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	captureF = regexp.MustCompile(`^(/.*|header:[A-Za-z0-9-]+)$`)
)

// Parse reads one scenario file; name is its path, for messages.
func Parse(name string, data []byte) (*Scenario, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: over %d bytes", name, maxFileSize)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// The step structs do not keep their line, so read it from the node tree.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	lines := stepLines(&root)
	sc := &Scenario{Name: f.Name, About: f.About, File: name, Vars: f.Vars, Rules: f.Rules}
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(path.Base(name), path.Ext(name))
	}
	var errs []error
	failf := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	if _, err := compare.New(f.Rules); err != nil {
		failf(1, "rules: %v", err)
	}
	if len(f.Steps) == 0 {
		failf(1, "no steps")
	}
	defined := map[string]bool{}
	for k := range f.Vars {
		if !varName.MatchString(k) {
			failf(1, "vars: %q is not a valid name (lower case letters, digits, _)", k)
		}
		defined[k] = true
	}
	for i, spec := range f.Steps {
		line := 1
		if i < len(lines) {
			line = lines[i]
		}
		st, stepErrs := buildStep(spec, fmt.Sprintf("%s:%d", name, line), i, defined)
		for _, e := range stepErrs {
			failf(line, "step %q: %v", st.Name, e)
		}
		sc.Steps = append(sc.Steps, st)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sc, nil
}

func stepLines(root *yaml.Node) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "steps" && m.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, s := range m.Content[i+1].Content {
				out = append(out, s.Line)
			}
			return out
		}
	}
	return nil
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// buildStep checks a step and turns it into its runnable form. defined holds the variables
// earlier steps define; the step's captures are added to it.
func buildStep(spec stepSpec, where string, index int, defined map[string]bool) (*Step, []error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	st := &Step{
		Name: spec.Name, Where: where, Setup: spec.Setup, Concurrent: spec.Concurrent,
		Capture: spec.Capture, Compare: spec.Compare == nil || *spec.Compare, Endpoint: spec.Endpoint,
		Rules: compare.Rules{Ignore: spec.Ignore},
		Request: Request{Method: strings.ToUpper(spec.Request.Method), Path: spec.Request.Path,
			Headers: spec.Request.Headers, Body: spec.Request.Body, ContentType: spec.Request.ContentType},
	}
	if st.Name == "" {
		st.Name = "step " + strconv.Itoa(index+1)
	}
	if spec.Request.JSON.Kind != 0 {
		st.Request.JSON = &spec.Request.JSON
	}
	if !slices.Contains(methods, st.Request.Method) {
		fail("request.method %q: want one of %s", spec.Request.Method, strings.Join(methods, ", "))
	}
	if !strings.HasPrefix(st.Request.Path, "/") && !strings.HasPrefix(st.Request.Path, "${") {
		fail("request.path %q: must start with / (or be a captured path, ${location})", st.Request.Path)
	}
	if st.Request.JSON != nil && st.Request.Body != nil {
		fail("request: give json or body, not both")
	}
	if len(spec.Ignore) > 0 {
		if _, err := compare.New(st.Rules); err != nil {
			fail("ignore: %v", err)
		}
	}
	switch {
	case st.Concurrent < 0 || st.Concurrent > MaxConcurrent:
		fail("concurrent is %d, want 1 to %d", st.Concurrent, MaxConcurrent)
	case st.Concurrent > 0 && len(st.Capture) > 0:
		fail("a concurrent step cannot capture: its answers are many")
	case st.Concurrent > 0 && spec.Await != "":
		fail("a concurrent step cannot await")
	}
	if spec.Await != "" {
		d, err := time.ParseDuration(spec.Await)
		switch {
		case err != nil:
			fail("await: %v", err)
		case d <= 0 || d > MaxAwait:
			fail("await is %s, want above 0 and at most %s", d, MaxAwait)
		case st.Request.Method != http.MethodGet && st.Request.Method != http.MethodHead:
			fail("await repeats the request, so only GET and HEAD may await")
		}
		st.Await = d
	}
	exp, expErrs := buildExpect(spec.Expect, st.Concurrent > 0)
	st.Expect = exp
	errs = append(errs, expErrs...)

	// Every ${name} must be defined by vars or an earlier capture (or be ${i} in a
	// concurrent step), so a typo fails at load time, not half-way through a run.
	scope := defined
	if st.Concurrent > 0 {
		scope = withVar(defined, "i")
	}
	for _, s := range st.templates() {
		if err := checkTemplate(s, scope); err != nil {
			fail("%v", err)
		}
	}
	for name, from := range st.Capture {
		if !varName.MatchString(name) {
			fail("capture: %q is not a valid name (lower case letters, digits, _)", name)
		}
		if !captureF.MatchString(from) {
			fail("capture %s: %q: want a JSON pointer (/id) or header:Name", name, from)
		}
		defined[name] = true
	}
	return st, errs
}

func withVar(m map[string]bool, name string) map[string]bool {
	out := maps.Clone(m)
	out[name] = true
	return out
}

func buildExpect(e expectSpec, concurrent bool) (Expect, []error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	out := Expect{Status: e.Status, Code: e.Code, Absent: e.Absent, Headers: e.Headers,
		Statuses: e.Statuses, AtMost: e.AtMost, AtLeast: e.AtLeast, Only: e.Only, Codes: e.Codes}
	if e.Status != 0 && (e.Status < 100 || e.Status > 599) {
		fail("expect.status %d is not an HTTP status", e.Status)
	}
	switch e.Body.Kind {
	case 0:
	case yaml.MappingNode:
		for i := 0; i+1 < len(e.Body.Content); i += 2 {
			k := e.Body.Content[i].Value
			if !strings.HasPrefix(k, "/") {
				fail("expect.body: key %q is not a JSON pointer (write /%s)", k, k)
			}
			out.Body = append(out.Body, Field{Pointer: k, Value: e.Body.Content[i+1]})
		}
	default:
		fail("expect.body: want a mapping of JSON pointers to values")
	}
	for _, p := range e.Absent {
		if !strings.HasPrefix(p, "/") {
			fail("expect.absent: %q is not a JSON pointer", p)
		}
	}
	aggregate := e.Statuses != nil || e.AtMost != nil || e.AtLeast != nil || e.Only != nil || e.Codes != nil
	switch {
	case concurrent && !aggregate && e.Status == 0:
		fail("a concurrent step needs an expectation on its outcome (statuses, at_most, at_least, only or codes): oversell is a failure even if both sides agree")
	case !concurrent && aggregate:
		fail("statuses, at_most, at_least, only and codes are for concurrent steps")
	case !concurrent && e.Status == 0:
		fail("expect.status is required")
	}
	return out, errs
}

// templates lists every string of the step that may hold ${name}.
func (st *Step) templates() []string {
	out := []string{st.Request.Path}
	for k, v := range st.Request.Headers {
		out = append(out, k, v)
	}
	if st.Request.Body != nil {
		out = append(out, *st.Request.Body)
	}
	out = appendScalars(out, st.Request.JSON)
	for _, f := range st.Expect.Body {
		out = appendScalars(out, f.Value)
	}
	for _, v := range st.Expect.Headers {
		if v != nil {
			out = append(out, *v)
		}
	}
	return out
}

func appendScalars(out []string, n *yaml.Node) []string {
	if n == nil {
		return out
	}
	if n.Kind == yaml.ScalarNode {
		return append(out, n.Value)
	}
	for _, c := range n.Content {
		out = appendScalars(out, c)
	}
	return out
}
