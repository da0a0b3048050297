package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Step is what a promotion does to a route.
type Step struct {
	// Route is the route's name.
	Route string
	// From and To describe the stages: "shadow", "canary 10%", "full".
	From, To string
	// Candidate is the backend being promoted; Primary the route's primary before the step.
	Candidate, Primary string
	// Percent is the canary's new share when To is a canary stage.
	Percent float64
	// Full says the candidate becomes the route's primary.
	Full bool
}

// ErrNothingToPromote is returned for a route with no shadow and no canary.
var ErrNothingToPromote = errors.New("nothing to promote")

// StageName describes where a route stands: "shadow", "canary 10%", or "full" (neither a
// shadow nor a canary share).
func StageName(r Route) string {
	switch r.Stage() {
	case "canary":
		return fmt.Sprintf("canary %g%%", r.Canary.Percent)
	case "shadow":
		return "shadow"
	}
	return "full"
}

// FindRoute returns the index of the route named name (its name, or its match path when
// only one route has that path).
func FindRoute(c *Config, name string) (int, error) {
	byPath := -1
	for i, r := range c.Routes {
		if r.Name == name {
			return i, nil
		}
		if r.Match.Path == name {
			if byPath >= 0 {
				byPath = -2
			} else if byPath == -1 {
				byPath = i
			}
		}
	}
	if byPath >= 0 {
		return byPath, nil
	}
	names := make([]string, len(c.Routes))
	for i, r := range c.Routes {
		names[i] = strconv.Quote(r.Name)
	}
	return -1, fmt.Errorf("no route named %q (routes: %s)", name, strings.Join(names, ", "))
}

// PromoteRoute returns the config file data with route moved one stage on — shadow → canary at
// the first of promote.steps, canary → the next step, the last canary step → full — and
// what it did. It edits the text in place, guided by the YAML nodes' positions: every byte
// outside the lines it changes stays as it was, comments and layout included. The result is
// parsed again and must differ from the original in exactly the intended way, or Promote
// fails rather than return it. path names the file in messages.
//
// To full, the candidate becomes to, the canary and shadow entries go, and the old primary
// becomes the fallback when the route has none (reads can fall back to it at once).
func PromoteRoute(path string, data []byte, route string) ([]byte, Step, error) {
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, Step{}, err
	}
	i, err := FindRoute(cfg, route)
	if err != nil {
		return nil, Step{}, err
	}
	r := cfg.Routes[i]
	pct, full, ok := r.NextStep()
	if !ok && r.Canary != nil {
		// A canary at 0%: rolled back by a facade (its comment says why), or set so by hand.
		// Promoting it again skips the proof a rollback asked for; the operator decides.
		return nil, Step{}, fmt.Errorf("route %q serves from %s alone: its canary to %s is at 0%% (a facade's rollback says why in a comment on its line): %w; "+
			"once the candidate is fixed, set canary.percent by hand to run it again, or add a shadow: { to: %s } to prove it first, which promote then moves to the first step",
			r.Name, r.To, r.Canary.To, ErrNothingToPromote, r.Canary.To)
	}
	if !ok {
		return nil, Step{}, fmt.Errorf("route %q serves from %s alone: %w (add a shadow: { to: CANDIDATE } first)", r.Name, r.To, ErrNothingToPromote)
	}
	step := Step{Route: r.Name, From: StageName(r), Candidate: r.Candidate(), Primary: r.To, Percent: pct, Full: full}
	want := r
	if full {
		step.To = "full"
		want.To = step.Candidate
		want.Canary, want.Shadow = nil, nil
		if want.Fallback == "" || want.Fallback == step.Candidate {
			want.Fallback = r.To
		}
	} else {
		step.To = fmt.Sprintf("canary %g%%", pct)
		c := Canary{To: step.Candidate, Percent: pct}
		if r.Canary != nil {
			c.Sticky = r.Canary.Sticky
		}
		if c.Sticky == "" && r.Promote != nil {
			c.Sticky = r.Promote.Sticky
		}
		want.Canary = &c
	}

	e, err := newEditor(data)
	if err != nil {
		return nil, step, fmt.Errorf("%s: %w", path, err)
	}
	item, err := e.route(i)
	if err != nil {
		return nil, step, fmt.Errorf("%s: routes[%d]: %w", path, i, err)
	}
	if full {
		if err := e.setScalar(item, "to", step.Candidate); err != nil {
			return nil, step, fmt.Errorf("%s: routes[%d]: %w", path, i, err)
		}
		if r.Fallback == "" {
			e.insertAfter(item, "to", "fallback: "+r.To)
		} else if r.Fallback == step.Candidate {
			if err := e.setScalar(item, "fallback", r.To); err != nil {
				return nil, step, fmt.Errorf("%s: routes[%d]: %w", path, i, err)
			}
		}
		for _, key := range []string{"canary", "shadow"} {
			if err := e.remove(item, key); err != nil {
				return nil, step, fmt.Errorf("%s: routes[%d]: %w", path, i, err)
			}
		}
	} else {
		canary := fmt.Sprintf("canary: { to: %s, percent: %g", step.Candidate, pct)
		if want.Canary.Sticky != "" {
			canary += ", sticky: " + want.Canary.Sticky
		}
		canary += " }"
		if r.Canary != nil {
			// Replace the whole entry: its percent, and its sticky when promote names one.
			if err := e.replace(item, "canary", canary); err != nil {
				return nil, step, fmt.Errorf("%s: routes[%d]: %w", path, i, err)
			}
		} else {
			e.insertAfter(item, "shadow", canary)
		}
	}
	out := e.bytes()

	// The edit must do exactly what was meant, and nothing else.
	got, err := Parse(path, out)
	if err != nil {
		return nil, step, fmt.Errorf("promoting route %q would leave %s invalid: %w", r.Name, path, err)
	}
	expect := *cfg
	expect.Routes = append([]Route(nil), cfg.Routes...)
	reparsed, err := Parse(path, data)
	if err != nil {
		return nil, step, err
	}
	expect.Routes[i] = normalize(reparsed, want, i, value(item, "promote") != nil)
	if !reflect.DeepEqual(got.Routes, expect.Routes) || !sameApartFromRoutes(got, cfg) {
		return nil, step, fmt.Errorf("promoting route %q: the edited %s does not say what was meant (an unusual layout?); edit it by hand", r.Name, path)
	}
	return out, step, nil
}

// normalize returns want with the defaults a parse fills in, as route i of c would have
// them; written says the file has a promote block for it.
func normalize(c *Config, want Route, i int, written bool) Route {
	probe := *c
	probe.Routes = append([]Route(nil), c.Routes...)
	if !written {
		want.Promote = nil // a default one, which a parse adds only to a route with a shadow or a canary
	}
	probe.Routes[i] = want
	probe.setTrafficDefaults()
	return probe.Routes[i]
}

// sameApartFromRoutes reports whether a and b are the same config but for their routes.
func sameApartFromRoutes(a, b *Config) bool {
	x, y := *a, *b
	x.Routes, y.Routes = nil, nil
	return reflect.DeepEqual(x, y)
}

// editor edits a YAML text line by line, guided by its parsed nodes. Edits are recorded
// against the original line numbers and applied together by bytes.
type editor struct {
	lines []string
	root  *yaml.Node
	// set replaces a line; inserted adds lines after one; removed drops lines.
	set      map[int]string
	inserted map[int][]string
	removed  map[int]bool
}

func newEditor(data []byte) (*editor, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a mapping")
	}
	return &editor{lines: strings.Split(string(data), "\n"), root: doc.Content[0],
		set: map[int]string{}, inserted: map[int][]string{}, removed: map[int]bool{}}, nil
}

// route returns the mapping node of routes[i], which must be written in block style.
func (e *editor) route(i int) (*yaml.Node, error) {
	routes := value(e.root, "routes")
	if routes == nil || routes.Kind != yaml.SequenceNode || i >= len(routes.Content) {
		return nil, errors.New("not found in the file")
	}
	item := routes.Content[i]
	if item.Kind != yaml.MappingNode || item.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("written as a flow mapping ({ … }) on one line; write the route as a block (one key a line) for promote to edit it")
	}
	return item, nil
}

// value returns the value of key in mapping m, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	if _, v := entry(m, key); v != nil {
		return v
	}
	return nil
}

func entry(m *yaml.Node, key string) (k, v *yaml.Node) {
	for j := 0; j+1 < len(m.Content); j += 2 {
		if m.Content[j].Value == key {
			return m.Content[j], m.Content[j+1]
		}
	}
	return nil, nil
}

// line returns the current text of 1-based line n.
func (e *editor) line(n int) string {
	if s, ok := e.set[n]; ok {
		return s
	}
	return e.lines[n-1]
}

// setScalar replaces the plain scalar value of key in m with v, in place on its line.
func (e *editor) setScalar(m *yaml.Node, key, v string) error {
	_, val := entry(m, key)
	if val == nil || val.Kind != yaml.ScalarNode || val.Line == 0 {
		return fmt.Errorf("no %s value to change", key)
	}
	text := e.line(val.Line)
	col := val.Column - 1
	if col > len(text) {
		return fmt.Errorf("the %s value is not where the parser put it", key)
	}
	end := col
	quoted := val.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	if quoted {
		q := text[col]
		end = strings.IndexByte(text[col+1:], q)
		if end < 0 {
			return fmt.Errorf("the %s value's quotes do not close on its line", key)
		}
		end += col + 2
	} else {
		for end < len(text) && !strings.ContainsRune(",}] \t#", rune(text[end])) {
			end++
		}
	}
	if strings.TrimSpace(strings.Trim(text[col:end], `"'`)) != val.Value {
		return fmt.Errorf("the %s value is written across lines; edit it by hand", key)
	}
	e.set[val.Line] = text[:col] + v + text[end:]
	return nil
}

// extent returns the lines an entry of m spans: from its key's line to the last line of its
// value.
func extent(k, v *yaml.Node) (first, last int) {
	first, last = k.Line, maxLine(v)
	return first, last
}

func maxLine(n *yaml.Node) int {
	last := n.Line
	for _, c := range n.Content {
		if l := maxLine(c); l > last {
			last = l
		}
	}
	return last
}

// indent returns the indentation of m's keys.
func indent(m *yaml.Node) string { return strings.Repeat(" ", m.Content[0].Column-1) }

// insertAfter adds text as an entry of m after the entry of key (or after m's last entry when
// m has no key), at m's indentation.
func (e *editor) insertAfter(m *yaml.Node, key, text string) {
	k, v := entry(m, key)
	if k == nil {
		k, v = m.Content[len(m.Content)-2], m.Content[len(m.Content)-1]
	}
	_, last := extent(k, v)
	e.inserted[last] = append(e.inserted[last], indent(m)+text)
}

// remove deletes the entry of key from m, with its whole value; an entry that is not there
// is left alone. The entry must not be the first of a list item ("- key:").
func (e *editor) remove(m *yaml.Node, key string) error {
	k, v := entry(m, key)
	if k == nil {
		return nil
	}
	if k == m.Content[0] {
		return fmt.Errorf("%s is the route's first key; move it after match: for promote to remove it", key)
	}
	first, last := extent(k, v)
	if strings.TrimSpace(e.line(first)[:k.Column-1]) != "" {
		return fmt.Errorf("%s shares its line with another key; edit it by hand", key)
	}
	for n := first; n <= last; n++ {
		e.removed[n] = true
	}
	return nil
}

// replace writes text in place of the entry of key in m, at its indentation.
func (e *editor) replace(m *yaml.Node, key, text string) error {
	k, v := entry(m, key)
	if k == nil {
		return fmt.Errorf("no %s to replace", key)
	}
	if err := e.remove(m, key); err != nil {
		return err
	}
	first, _ := extent(k, v)
	// Keep a comment that followed the old value on its first line.
	comment := ""
	if i := strings.Index(e.lines[first-1], " #"); i >= 0 && v.Style&yaml.FlowStyle != 0 {
		comment = e.lines[first-1][i:]
	}
	e.inserted[first] = append([]string{strings.Repeat(" ", k.Column-1) + text + comment}, e.inserted[first]...)
	return nil
}

// bytes returns the edited text.
func (e *editor) bytes() []byte {
	var b bytes.Buffer
	for n := 1; n <= len(e.lines); n++ {
		if !e.removed[n] {
			b.WriteString(e.line(n))
			if n < len(e.lines) || len(e.inserted[n]) > 0 {
				b.WriteByte('\n')
			}
		}
		for j, ins := range e.inserted[n] {
			b.WriteString(ins)
			if n < len(e.lines) || j < len(e.inserted[n])-1 {
				b.WriteByte('\n')
			}
		}
	}
	return b.Bytes()
}
