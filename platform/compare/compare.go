// Package compare tells how two HTTP responses to the same request differ: the status, the
// headers that matter and the body, JSON bodies semantically (key order and number
// formatting do not matter, numbers compare exactly, arrays in order). It is the one differ
// of Ficus: the scenario runner of `make compare` and the facade's shadow traffic both use it.
//
// Noise is filtered by rules: ignore values by JSON pointer pattern, call two values equal
// when both are of a declared kind (RFC 3339 timestamps, a regexp), and pair the ids each
// side generated (captures), so that an order id of side A and the one side B gave the same
// order count as equal wherever they appear later.
package compare

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Defaults of Rules.
const (
	// DefaultMaxDifferences is how many differences a Result lists when
	// Rules.MaxDifferences is zero.
	DefaultMaxDifferences = 64
	// DefaultMaxDepth is how deeply JSON may nest when Rules.MaxDepth is zero.
	DefaultMaxDepth = 256
	// DefaultMaxValueLen is how many bytes of each value a Difference quotes when
	// Rules.MaxValueLen is zero.
	DefaultMaxValueLen = 256
)

// DefaultHeaders are the response headers compared when Rules.Headers is nil.
var DefaultHeaders = []string{"Content-Type", "Location", "Idempotent-Replayed", "Retry-After"}

// Response is one side's answer as the engine sees it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Rules say what to compare and what is noise. The zero value compares the status, the
// DefaultHeaders and the whole body, with no noise rules.
type Rules struct {
	// Headers are the response headers to compare (any case). Nil means DefaultHeaders;
	// an empty non-nil slice compares no header.
	Headers []string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// Ignore lists JSON pointer patterns (RFC 6901) of body values not to compare, with "*"
	// matching any one segment and "**" any number: "/items/*/updated_at", "/**/etag".
	// Ignoring a value ignores everything inside it and its presence on one side only; ""
	// ignores the whole body. Default none.
	Ignore []string `json:"ignore,omitempty" yaml:"ignore,omitempty"`
	// Equivalent lists rules under which two differing values are equal when both match:
	// {class: rfc3339} calls any two timestamps equal. Default none.
	Equivalent []ValueRule `json:"equivalent,omitempty" yaml:"equivalent,omitempty"`
	// Capture lists where generated ids are. Differing values there are paired in the IDs
	// of the comparison (A's value ↔ B's value) and count as equal unless one of them is
	// already paired with something else. {at: /id} takes whole values; {class: uuid} every
	// UUID in any value or header. Default none.
	Capture []ValueRule `json:"capture,omitempty" yaml:"capture,omitempty"`
	// MaxDifferences bounds the differences a Result lists; more are only counted.
	// Zero means DefaultMaxDifferences.
	MaxDifferences int `json:"max_differences,omitempty" yaml:"max_differences,omitempty"`
	// MaxDepth bounds JSON nesting; a deeper body is compared byte for byte. Zero means
	// DefaultMaxDepth.
	MaxDepth int `json:"max_depth,omitempty" yaml:"max_depth,omitempty"`
	// MaxValueLen bounds how many bytes of a value a Difference quotes. Zero means
	// DefaultMaxValueLen.
	MaxValueLen int `json:"max_value_len,omitempty" yaml:"max_value_len,omitempty"`
}

// Merge returns r with extra's headers (when set), ignores, equivalences and captures added,
// and extra's limits where set. Neither input is changed.
func (r Rules) Merge(extra Rules) Rules {
	out := r
	if extra.Headers != nil {
		out.Headers = extra.Headers
	}
	out.Ignore = append(slices.Clip(r.Ignore), extra.Ignore...)
	out.Equivalent = append(slices.Clip(r.Equivalent), extra.Equivalent...)
	out.Capture = append(slices.Clip(r.Capture), extra.Capture...)
	out.MaxDifferences = cmp.Or(extra.MaxDifferences, r.MaxDifferences)
	out.MaxDepth = cmp.Or(extra.MaxDepth, r.MaxDepth)
	out.MaxValueLen = cmp.Or(extra.MaxValueLen, r.MaxValueLen)
	return out
}

// Part is the part of a response a difference is in.
type Part uint8

// The parts of a response.
const (
	PartStatus Part = iota + 1
	PartHeader
	PartBody
)

var partNames = [...]string{PartStatus: "status", PartHeader: "header", PartBody: "body"}

func (p Part) String() string {
	if int(p) < len(partNames) && partNames[p] != "" {
		return partNames[p]
	}
	return "part(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText writes the part's name.
func (p Part) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a part's name.
func (p *Part) UnmarshalText(b []byte) error {
	i := slices.Index(partNames[:], string(b))
	if i <= 0 {
		return fmt.Errorf("unknown part %q", b)
	}
	*p = Part(i)
	return nil
}

// Kind is what kind of difference it is.
type Kind uint8

// The kinds of difference.
const (
	// Changed: both sides have the value, and they differ.
	Changed Kind = iota + 1
	// OnlyInA: side A has the value (a member, an element, a header), side B has not.
	OnlyInA
	// OnlyInB: side B has the value, side A has not.
	OnlyInB
	// TypeChanged: both sides have the value, of different JSON types.
	TypeChanged
)

var kindNames = [...]string{Changed: "changed", OnlyInA: "only_in_a", OnlyInB: "only_in_b", TypeChanged: "type"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	i := slices.Index(kindNames[:], string(b))
	if i <= 0 {
		return fmt.Errorf("unknown kind %q", b)
	}
	*k = Kind(i)
	return nil
}

// Difference is one way the two responses differ.
type Difference struct {
	Part Part `json:"part"`
	// Path is the body value's JSON pointer ("" for the whole body), or the header's name.
	Path string `json:"path,omitempty"`
	Kind Kind   `json:"kind"`
	// A and B are the values: JSON text for body values, the text of a header or status.
	// The side that lacks the value has "". Long values are cut at Rules.MaxValueLen.
	A string `json:"a,omitempty"`
	B string `json:"b,omitempty"`
	// Note explains what the values alone do not, e.g. why an id did not match.
	Note string `json:"note,omitempty"`
}

// String renders the difference on one line, e.g. `body /lines/0/quantity: changed: A 2, B 3`.
func (d Difference) String() string {
	var b strings.Builder
	b.WriteString(d.Part.String())
	if d.Part == PartBody {
		b.WriteString(" ")
		if d.Path == "" {
			b.WriteString("(whole)")
		}
		b.WriteString(d.Path)
	} else if d.Path != "" {
		b.WriteString(" " + d.Path)
	}
	switch d.Kind {
	case OnlyInA:
		fmt.Fprintf(&b, ": only in A: %s", d.A)
	case OnlyInB:
		fmt.Fprintf(&b, ": only in B: %s", d.B)
	default:
		fmt.Fprintf(&b, ": %s: A %s, B %s", strings.ReplaceAll(d.Kind.String(), "type", "type changed"), d.A, d.B)
	}
	if d.Note != "" {
		b.WriteString(" (" + d.Note + ")")
	}
	return b.String()
}

// Result is the outcome of one comparison.
type Result struct {
	// Differences lists the differences that no rule explains, at most Rules.MaxDifferences:
	// status, then body (within an object in key order, within an array by index), then
	// headers in the order of Rules.Headers.
	Differences []Difference `json:"differences,omitempty"`
	// Omitted counts the differences beyond the limit.
	Omitted int `json:"omitted,omitempty"`
	// Ignored counts the differences an Ignore rule removed.
	Ignored int `json:"ignored,omitempty"`
}

// Equal says whether the responses match.
func (r Result) Equal() bool { return len(r.Differences) == 0 && r.Omitted == 0 }

// Comparer compares responses under one set of rules. It is immutable once built and safe
// for concurrent use; a comparison reuses kept buffers and allocates nothing when the
// responses match.
type Comparer struct {
	headers  []string
	ignore   []pattern
	equiv    []valueRule
	capture  []valueRule
	maxDiffs int
	maxDepth int
	maxValue int
	// free keeps scratch states for reuse. A bounded channel rather than a sync.Pool: a
	// pool is emptied by every GC (and randomly under the race detector), which would make
	// the per-comparison cost depend on the collector.
	free chan *state
}

// maxKeptNodes bounds the parse buffers a kept state holds on to, so one huge body does not
// pin its memory for the Comparer's lifetime.
const maxKeptNodes = 1 << 16

// New compiles rules into a Comparer. It reports every invalid rule at once.
func New(r Rules) (*Comparer, error) {
	c := &Comparer{maxDiffs: r.MaxDifferences, maxDepth: r.MaxDepth, maxValue: r.MaxValueLen,
		free: make(chan *state, 2*runtime.GOMAXPROCS(0))}
	var errs []error
	for _, l := range []struct {
		name string
		v    *int
		def  int
	}{{"max_differences", &c.maxDiffs, DefaultMaxDifferences}, {"max_depth", &c.maxDepth, DefaultMaxDepth}, {"max_value_len", &c.maxValue, DefaultMaxValueLen}} {
		switch {
		case *l.v < 0:
			errs = append(errs, fmt.Errorf("%s is %d, must not be negative", l.name, *l.v))
		case *l.v == 0:
			*l.v = l.def
		}
	}
	headers := r.Headers
	if headers == nil {
		headers = DefaultHeaders
	}
	for _, h := range headers {
		if h == "" {
			errs = append(errs, fmt.Errorf("headers: an empty header name"))
			continue
		}
		c.headers = append(c.headers, textproto.CanonicalMIMEHeaderKey(h))
	}
	for _, s := range r.Ignore {
		p, err := compilePattern(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ignore: %w", err))
			continue
		}
		c.ignore = append(c.ignore, p)
	}
	for i, v := range r.Equivalent {
		vr, err := compileValueRule(v, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("equivalent[%d]: %w", i, err))
			continue
		}
		c.equiv = append(c.equiv, vr)
	}
	for i, v := range r.Capture {
		vr, err := compileValueRule(v, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("capture[%d]: %w", i, err))
			continue
		}
		c.capture = append(c.capture, vr)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("compiling comparison rules: %w", errors.Join(errs...))
	}
	return c, nil
}

// Compare compares a with b. Captured ids are learnt into ids and ids already there count
// as equal; nil ids means a mapping private to this one comparison. Neither response is
// changed or kept.
func (c *Comparer) Compare(a, b Response, ids *IDs) Result {
	var s *state
	select {
	case s = <-c.free:
	default:
		s = &state{c: c}
	}
	s.ids = ids
	if ids == nil {
		s.local.reset()
		s.ids = &s.local
	}
	s.res = Result{}
	if a.Status != b.Status {
		s.add(PartStatus, nil, Changed, strconv.Itoa(a.Status), strconv.Itoa(b.Status), "")
	}
	s.body(a, b)
	for _, h := range c.headers {
		s.header(h, a.Header[h], b.Header[h])
	}
	res := s.res
	s.res, s.ids = Result{}, nil
	s.a.data, s.b.data = nil, nil // do not keep the caller's bodies alive
	if cap(s.a.nodes) <= maxKeptNodes && cap(s.b.nodes) <= maxKeptNodes {
		select {
		case c.free <- s:
		default:
		}
	}
	return res
}

// state is one comparison's scratch space, kept per Comparer for reuse.
type state struct {
	c     *Comparer
	ids   *IDs
	local IDs
	a, b  document
	path  []byte
	mems  []member
	pairs [][2][]byte
	res   Result
}

// member is one object member: its decoded key and its value's node.
type member struct {
	key []byte
	val int32
}

func (s *state) add(part Part, path []byte, k Kind, a, b, note string) {
	if part == PartBody {
		for i := range s.c.ignore {
			if s.c.ignore[i].covers(path) {
				s.res.Ignored++
				return
			}
		}
	}
	if len(s.res.Differences) >= s.c.maxDiffs {
		s.res.Omitted++
		return
	}
	s.res.Differences = append(s.res.Differences, Difference{Part: part, Path: string(path), Kind: k, A: a, B: b, Note: note})
}

func (s *state) ignored() bool {
	for i := range s.c.ignore {
		if s.c.ignore[i].covers(s.path) {
			return true
		}
	}
	return false
}

// body compares the bodies as JSON when both are JSON (by Content-Type, or without one,
// by parsing), else byte for byte.
func (s *state) body(a, b Response) {
	s.path = s.path[:0]
	note := ""
	if len(a.Body) > 0 && len(b.Body) > 0 && jsonType(a.Header) && jsonType(b.Header) {
		errA := parse(&s.a, a.Body, s.c.maxDepth)
		errB := parse(&s.b, b.Body, s.c.maxDepth)
		if errA == nil && errB == nil {
			s.diff(0, 0)
			return
		}
		switch {
		case errA != nil && errB != nil:
			note = "neither body is JSON (A: " + errA.Error() + "), compared byte for byte"
		case errA != nil:
			note = "A's body is not JSON (" + errA.Error() + "), compared byte for byte"
		default:
			note = "B's body is not JSON (" + errB.Error() + "), compared byte for byte"
		}
	}
	if bytes.Equal(a.Body, b.Body) {
		return
	}
	if note == "" {
		note = "the bodies differ from byte " + strconv.Itoa(firstDifference(a.Body, b.Body))
	}
	s.add(PartBody, nil, Changed, s.quote(a.Body), s.quote(b.Body), note)
}

func firstDifference(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// jsonType says whether a Content-Type is JSON (application/json or a +json type), or
// missing, in which case parsing decides.
func jsonType(h http.Header) bool {
	ct := h.Get("Content-Type")
	if ct == "" {
		return true
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, "application/json") ||
		(len(ct) > 5 && strings.EqualFold(ct[len(ct)-5:], "+json") && strings.HasPrefix(strings.ToLower(ct), "application/"))
}

// diff compares A's value ia with B's value ib at s.path.
func (s *state) diff(ia, ib int32) {
	na, nb := &s.a.nodes[ia], &s.b.nodes[ib]
	if na.kind != nb.kind {
		s.add(PartBody, s.path, TypeChanged, s.value(&s.a, na), s.value(&s.b, nb),
			"A has "+na.kind.String()+", B has "+nb.kind.String())
		return
	}
	switch na.kind {
	case kNull:
	case kBool:
		if na.truth != nb.truth {
			s.add(PartBody, s.path, Changed, s.value(&s.a, na), s.value(&s.b, nb), "")
		}
	case kNumber:
		if !numEqual(s.a.text(na), s.b.text(nb)) {
			s.scalar(na, nb)
		}
	case kString:
		if !bytes.Equal(s.a.text(na), s.b.text(nb)) {
			s.scalar(na, nb)
		}
	case kArray:
		s.array(ia, ib)
	case kObject:
		s.object(ia, ib)
	}
}

// scalar handles two differing strings or numbers: unless a rule explains the difference,
// it is one.
func (s *state) scalar(na, nb *node) {
	if s.ignored() {
		s.res.Ignored++
		return
	}
	ok, note := s.sameValue(s.a.text(na), s.b.text(nb), false)
	if !ok {
		s.add(PartBody, s.path, Changed, s.value(&s.a, na), s.value(&s.b, nb), note)
	}
}

// sameValue decides whether two differing texts are equal under the rules: through ids
// already paired, by capturing new ids, or by an equivalence. note says why not, when a
// capture conflicted.
func (s *state) sameValue(a, b []byte, header bool) (same bool, note string) {
	if s.ids.equalUnder(a, b) {
		return true, ""
	}
	for i := range s.c.capture {
		r := &s.c.capture[i]
		if !r.applies(s.path, header) {
			continue
		}
		ok, why := s.captureIDs(r, a, b)
		if ok {
			return true, ""
		}
		if why != "" {
			note = why
		}
	}
	for i := range s.c.equiv {
		r := &s.c.equiv[i]
		if r.applies(s.path, header) && r.matches(a) && r.matches(b) {
			return true, ""
		}
	}
	return false, note
}

// captureIDs pairs the ids the rule finds in a and b, in order, when both have the same
// number of them and the text around them is the same.
func (s *state) captureIDs(r *valueRule, a, b []byte) (bool, string) {
	sa := r.spans(a)
	if len(sa) == 0 {
		return false, ""
	}
	sb := r.spans(b)
	if len(sa) != len(sb) {
		return false, ""
	}
	ea, eb := 0, 0
	s.pairs = s.pairs[:0]
	for i := range sa {
		if !bytes.Equal(a[ea:sa[i][0]], b[eb:sb[i][0]]) {
			return false, ""
		}
		s.pairs = append(s.pairs, [2][]byte{a[sa[i][0]:sa[i][1]], b[sb[i][0]:sb[i][1]]})
		ea, eb = sa[i][1], sb[i][1]
	}
	if !bytes.Equal(a[ea:], b[eb:]) {
		return false, ""
	}
	if err := s.ids.learnAll(s.pairs); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func (s *state) array(ia, ib int32) {
	ea, eb := s.a.nodes[ia].next, s.b.nodes[ib].next
	ca, cb := ia+1, ib+1
	mark := len(s.path)
	for idx := 0; ca < ea || cb < eb; idx++ {
		s.path = strconv.AppendInt(append(s.path[:mark], '/'), int64(idx), 10)
		switch {
		case cb >= eb:
			s.add(PartBody, s.path, OnlyInA, s.value(&s.a, &s.a.nodes[ca]), "", "")
			ca = s.a.nodes[ca].next
		case ca >= ea:
			s.add(PartBody, s.path, OnlyInB, "", s.value(&s.b, &s.b.nodes[cb]), "")
			cb = s.b.nodes[cb].next
		default:
			s.diff(ca, cb)
			ca, cb = s.a.nodes[ca].next, s.b.nodes[cb].next
		}
	}
	s.path = s.path[:mark]
}

// object matches members by key, whatever their order. Both member lists are sorted by key
// and merged; of duplicate keys the last wins, as in encoding/json.
func (s *state) object(ia, ib int32) {
	start := len(s.mems)
	s.mems = members(s.mems, &s.a, ia)
	mid := len(s.mems)
	s.mems = members(s.mems, &s.b, ib)
	ma, mb := s.mems[start:mid], s.mems[mid:]
	mark := len(s.path)
	for i, j := 0, 0; i < len(ma) || j < len(mb); {
		order := 0
		switch {
		case i >= len(ma):
			order = 1
		case j >= len(mb):
			order = -1
		default:
			order = bytes.Compare(ma[i].key, mb[j].key)
		}
		switch {
		case order < 0:
			s.path = appendSegment(s.path[:mark], ma[i].key)
			s.add(PartBody, s.path, OnlyInA, s.value(&s.a, &s.a.nodes[ma[i].val]), "", "")
			i++
		case order > 0:
			s.path = appendSegment(s.path[:mark], mb[j].key)
			s.add(PartBody, s.path, OnlyInB, "", s.value(&s.b, &s.b.nodes[mb[j].val]), "")
			j++
		default:
			s.path = appendSegment(s.path[:mark], ma[i].key)
			s.diff(ma[i].val, mb[j].val)
			i, j = i+1, j+1
		}
	}
	s.path = s.path[:mark]
	s.mems = s.mems[:start]
}

// members appends the object's members to dst, sorted by key, the last of duplicates only.
func members(dst []member, d *document, i int32) []member {
	start := len(dst)
	end := d.nodes[i].next
	for c := i + 1; c < end; {
		v := c + 1
		dst = append(dst, member{key: d.text(&d.nodes[c]), val: v})
		c = d.nodes[v].next
	}
	ms := dst[start:]
	if len(ms) <= 12 {
		for x := 1; x < len(ms); x++ { // insertion sort: stable, and fast for small objects
			for y := x; y > 0 && bytes.Compare(ms[y-1].key, ms[y].key) > 0; y-- {
				ms[y-1], ms[y] = ms[y], ms[y-1]
			}
		}
	} else {
		slices.SortStableFunc(ms, func(x, y member) int { return bytes.Compare(x.key, y.key) })
	}
	// Keep the last of each run of equal keys.
	w := 0
	for r := range ms {
		if r+1 < len(ms) && bytes.Equal(ms[r].key, ms[r+1].key) {
			continue
		}
		ms[w] = ms[r]
		w++
	}
	return dst[:start+w]
}

func (s *state) header(name string, a, b []string) {
	if slices.Equal(a, b) {
		return
	}
	va, vb := strings.Join(a, ", "), strings.Join(b, ", ")
	switch {
	case len(a) == 0:
		s.add(PartHeader, []byte(name), OnlyInB, "", s.cut(vb), "")
	case len(b) == 0:
		s.add(PartHeader, []byte(name), OnlyInA, s.cut(va), "", "")
	case va == vb:
	default:
		s.path = s.path[:0]
		if ok, note := s.sameValue([]byte(va), []byte(vb), true); !ok {
			s.add(PartHeader, []byte(name), Changed, s.cut(va), s.cut(vb), note)
		}
	}
}

// value renders a body value for a Difference: its JSON text, compacted and cut.
func (s *state) value(d *document, n *node) string {
	raw := d.raw(n)
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		raw = buf.Bytes()
	}
	return s.cut(string(raw))
}

// quote renders a whole non-JSON body, cut: as is when it is printable text, else quoted
// as a Go string, so a stray newline or byte shows.
func (s *state) quote(b []byte) string {
	if utf8.Valid(b) && !bytes.ContainsFunc(b, unicode.IsControl) {
		return s.cut(string(b))
	}
	return s.cut(strconv.Quote(string(b)))
}

func (s *state) cut(v string) string {
	if len(v) <= s.c.maxValue {
		return v
	}
	n := s.c.maxValue
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n] + "…"
}
