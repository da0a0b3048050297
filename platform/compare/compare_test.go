package compare_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ficus-project/ficus/platform/compare"
)

func jsonResp(status int, body string, header ...string) compare.Response {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return compare.Response{Status: status, Header: h, Body: []byte(body)}
}

func mustNew(t *testing.T, r compare.Rules) *compare.Comparer {
	t.Helper()
	c, err := compare.New(r)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// diffs renders a result as one line per difference, for easy comparison in tables.
func diffs(r compare.Result) []string {
	out := make([]string, len(r.Differences))
	for i, d := range r.Differences {
		out[i] = d.String()
	}
	return out
}

func TestBodies(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want []string
	}{
		{"key order and whitespace", `{"a":1,"b":[1,2],"c":{"x":null,"y":true}}`, "{ \"c\": {\"y\": true, \"x\": null},\n \"b\": [1, 2], \"a\": 1 }", nil},
		{"one to one point oh", `{"n":1}`, `{"n":1.0}`, nil},
		{"exponent", `{"n":1}`, `{"n":1e0}`, nil},
		{"negative exponent", `{"n":1}`, `{"n":10e-1}`, nil},
		{"fraction with exponent", `{"n":150}`, `{"n":1.5E+2}`, nil},
		{"trailing zeros", `{"n":2.50}`, `{"n":2.5}`, nil},
		{"negative zero", `{"n":-0}`, `{"n":0.0e7}`, nil},
		{"large int64 cents exactly", `{"c":9007199254740993}`, `{"c":9007199254740992}`,
			[]string{"body /c: changed: A 9007199254740993, B 9007199254740992"}},
		{"max int64", `{"c":9223372036854775807}`, `{"c":9223372036854775807.0}`, nil},
		{"sign", `{"n":-1}`, `{"n":1}`, []string{"body /n: changed: A -1, B 1"}},
		{"tiny difference", `{"n":0.1}`, `{"n":0.10000000000000001}`, []string{"body /n: changed: A 0.1, B 0.10000000000000001"}},
		{"nested field", `{"lines":[{"sku":"A","quantity":2},{"sku":"B","quantity":1}]}`, `{"lines":[{"sku":"A","quantity":3},{"sku":"B","quantity":1}]}`,
			[]string{"body /lines/0/quantity: changed: A 2, B 3"}},
		{"arrays in order", `[1,2]`, `[2,1]`, []string{"body /0: changed: A 1, B 2", "body /1: changed: A 2, B 1"}},
		{"element only in A", `{"l":[1,2,3]}`, `{"l":[1,2]}`, []string{"body /l/2: only in A: 3"}},
		{"element only in B", `{"l":[]}`, `{"l":[{"a": 1}]}`, []string{`body /l/0: only in B: {"a":1}`}},
		{"member only in A", `{"a":1,"refunded_at":"x"}`, `{"a":1}`, []string{`body /refunded_at: only in A: "x"`}},
		{"member only in B", `{"a":1}`, `{"a":1,"b":{"c":[1, 2]}}`, []string{`body /b: only in B: {"c":[1,2]}`}},
		{"type", `{"a":"1"}`, `{"a":1}`, []string{`body /a: type changed: A "1", B 1 (A has string, B has number)`}},
		{"null versus object", `{"a":null}`, `{"a":{}}`, []string{`body /a: type changed: A null, B {} (A has null, B has object)`}},
		{"booleans", `[true]`, `[false]`, []string{"body /0: changed: A true, B false"}},
		{"escapes decode", `{"s":"\u0041\/\n\ud83d\ude00"}`, `{"s":"A/\n😀"}`, nil},
		{"escaped keys", `{"a\/b":1}`, `{"a/b":1}`, nil},
		{"pointer escaping", `{"a/b":{"c~d":1}}`, `{"a/b":{"c~d":2}}`, []string{"body /a~1b/c~0d: changed: A 1, B 2"}},
		{"duplicate keys: last wins", `{"a":1,"a":2}`, `{"a":2}`, nil},
		{"many keys, any order", manyKeys(40, false), manyKeys(40, true), nil},
		{"root scalar", `"x"`, `"y"`, []string{`body (whole): changed: A "x", B "y"`}},
	}
	c := mustNew(t, compare.Rules{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diffs(c.Compare(jsonResp(200, tt.a), jsonResp(200, tt.b), nil))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func manyKeys(n int, reverse bool) string {
	parts := make([]string, n)
	for i := range n {
		k := i
		if reverse {
			k = n - 1 - i
		}
		parts[i] = fmt.Sprintf(`"k%02d":%d`, k, k)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestDifferenceFields(t *testing.T) {
	c := mustNew(t, compare.Rules{})
	r := c.Compare(jsonResp(201, `{"lines":[{"quantity":2}]}`), jsonResp(200, `{"lines":[{"quantity":3}],"x":1}`), nil)
	want := []compare.Difference{
		{Part: compare.PartStatus, Kind: compare.Changed, A: "201", B: "200"},
		{Part: compare.PartBody, Path: "/lines/0/quantity", Kind: compare.Changed, A: "2", B: "3"},
		{Part: compare.PartBody, Path: "/x", Kind: compare.OnlyInB, B: "1"},
	}
	if len(r.Differences) != len(want) {
		t.Fatalf("differences = %v", diffs(r))
	}
	for i := range want {
		if r.Differences[i] != want[i] {
			t.Errorf("difference %d = %+v, want %+v", i, r.Differences[i], want[i])
		}
	}
	if r.Equal() {
		t.Error("Equal() with differences")
	}
}

func TestIgnore(t *testing.T) {
	a := `{"items":[{"sku":"A","updated_at":"t1","meta":{"etag":"1"}},{"sku":"B","updated_at":"t2"}],"etag":"x"}`
	b := `{"items":[{"sku":"A","updated_at":"t3","meta":{"etag":"2"}},{"sku":"B"}],"etag":"y"}`
	tests := []struct {
		name    string
		ignore  []string
		want    []string
		ignored int
	}{
		{"none", nil, []string{`body /etag: changed: A "x", B "y"`, `body /items/0/meta/etag: changed: A "1", B "2"`,
			`body /items/0/updated_at: changed: A "t1", B "t3"`, `body /items/1/updated_at: only in A: "t2"`}, 0},
		{"wildcard segment, also presence", []string{"/items/*/updated_at"}, []string{`body /etag: changed: A "x", B "y"`, `body /items/0/meta/etag: changed: A "1", B "2"`}, 2},
		{"any depth", []string{"/**/etag", "/items/*/updated_at"}, nil, 4},
		{"a subtree", []string{"/items"}, []string{`body /etag: changed: A "x", B "y"`}, 3},
		{"whole body", []string{""}, nil, 4},
		{"exact index", []string{"/items/1/updated_at"}, []string{`body /etag: changed: A "x", B "y"`, `body /items/0/meta/etag: changed: A "1", B "2"`,
			`body /items/0/updated_at: changed: A "t1", B "t3"`}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, compare.Rules{Ignore: tt.ignore}).Compare(jsonResp(200, a), jsonResp(200, b), nil)
			if got := diffs(r); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if r.Ignored != tt.ignored {
				t.Errorf("ignored %d, want %d", r.Ignored, tt.ignored)
			}
		})
	}
}

func TestEquivalent(t *testing.T) {
	a := `{"created_at":"2026-01-02T03:04:05.123Z","updated_at":"2026-01-02T03:04:05Z","note":"v1-abc","size":"big"}`
	b := `{"created_at":"2026-03-09T10:11:12.999999999+02:00","updated_at":"yesterday","note":"v1-xyz","size":"small"}`
	tests := []struct {
		name  string
		rules []compare.ValueRule
		want  []string
	}{
		{"none", nil, []string{
			`body /created_at: changed: A "2026-01-02T03:04:05.123Z", B "2026-03-09T10:11:12.999999999+02:00"`,
			`body /note: changed: A "v1-abc", B "v1-xyz"`, `body /size: changed: A "big", B "small"`,
			`body /updated_at: changed: A "2026-01-02T03:04:05Z", B "yesterday"`}},
		{"timestamps anywhere: both must be timestamps", []compare.ValueRule{{Class: compare.ClassRFC3339}}, []string{
			`body /note: changed: A "v1-abc", B "v1-xyz"`, `body /size: changed: A "big", B "small"`,
			`body /updated_at: changed: A "2026-01-02T03:04:05Z", B "yesterday"`}},
		{"regexp at a pointer", []compare.ValueRule{{At: "/note", Regexp: `^v1-[a-z]+$`}, {At: "/size", Regexp: `^v1-`}}, []string{
			`body /created_at: changed: A "2026-01-02T03:04:05.123Z", B "2026-03-09T10:11:12.999999999+02:00"`,
			`body /size: changed: A "big", B "small"`,
			`body /updated_at: changed: A "2026-01-02T03:04:05Z", B "yesterday"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, compare.Rules{Equivalent: tt.rules}).Compare(jsonResp(200, a), jsonResp(200, b), nil)
			if got := diffs(r); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

const (
	orderA = "0190a8a0-0000-7000-8000-00000000000a"
	orderB = "0190a8a0-0000-7000-8000-00000000000b"
	payA   = "0190a8a0-0000-7000-8000-0000000000fa"
	payB   = "0190a8a0-0000-7000-8000-0000000000fb"
)

func TestCapturesByPointer(t *testing.T) {
	c := mustNew(t, compare.Rules{Capture: []compare.ValueRule{{At: "/id"}, {At: "/payment_id"}}})
	var ids compare.IDs
	created := c.Compare(
		jsonResp(201, `{"id":"`+orderA+`","payment_id":"`+payA+`"}`, "Location", "/api/orders/"+orderA),
		jsonResp(201, `{"id":"`+orderB+`","payment_id":"`+payB+`"}`, "Location", "/api/orders/"+orderB), &ids)
	if !created.Equal() {
		t.Fatalf("the first sight of generated ids differs: %v", diffs(created))
	}
	if got, _ := ids.Lookup(orderA); got != orderB || ids.Len() != 2 {
		t.Fatalf("learnt %d pairs, %s → %q", ids.Len(), orderA, got)
	}
	// Later, the learnt ids are equal wherever they appear, also inside strings.
	later := c.Compare(
		jsonResp(200, `{"reference":"`+orderA+`","instance":"/api/payments/`+payA+`/refund"}`),
		jsonResp(200, `{"reference":"`+orderB+`","instance":"/api/payments/`+payB+`/refund"}`), &ids)
	if !later.Equal() {
		t.Errorf("mapped ids differ: %v", diffs(later))
	}
	// A swapped reference is caught: A's order paired with B's payment id.
	swapped := c.Compare(jsonResp(200, `{"reference":"`+orderA+`"}`), jsonResp(200, `{"reference":"`+payB+`"}`), &ids)
	if want := `body /reference: changed: A "` + orderA + `", B "` + payB + `"`; strings.Join(diffs(swapped), "\n") != want {
		t.Errorf("swapped ids: %v", diffs(swapped))
	}
	// At a capture pointer, a value already paired elsewhere is a conflict, with a note.
	conflict := c.Compare(jsonResp(200, `{"id":"`+orderA+`"}`), jsonResp(200, `{"id":"`+payB+`"}`), &ids)
	if len(conflict.Differences) != 1 || !strings.Contains(conflict.Differences[0].Note, "is paired with B's") {
		t.Errorf("conflicting capture: %+v", conflict.Differences)
	}
}

func TestCapturesByClassInHeaders(t *testing.T) {
	c := mustNew(t, compare.Rules{Capture: []compare.ValueRule{{Class: compare.ClassUUID}}})
	var ids compare.IDs
	// The Location header alone teaches the pair, and the body then agrees with it.
	r := c.Compare(
		jsonResp(201, `{"id":"`+orderA+`"}`, "Location", "/api/orders/"+orderA),
		jsonResp(201, `{"id":"`+orderB+`"}`, "Location", "/api/orders/"+orderB), &ids)
	if !r.Equal() {
		t.Fatalf("differences: %v", diffs(r))
	}
	// The text around the id must still agree.
	r = c.Compare(jsonResp(201, `{}`, "Location", "/api/orders/"+orderA), jsonResp(201, `{}`, "Location", "/api/order/"+orderB), &ids)
	if want := "header Location: changed: A /api/orders/" + orderA + ", B /api/order/" + orderB; strings.Join(diffs(r), "\n") != want {
		t.Errorf("differences: %v", diffs(r))
	}
	// Two ids in one value pair in order.
	r = c.Compare(jsonResp(200, `{"p":"`+payA+`/`+orderA+`"}`), jsonResp(200, `{"p":"`+payB+`/`+orderB+`"}`), &ids)
	if !r.Equal() {
		t.Errorf("two ids in one value: %v", diffs(r))
	}
	if got, _ := ids.Lookup(payA); got != payB {
		t.Errorf("learnt %s → %q", payA, got)
	}
}

func TestCapturesWithoutIDsArePerComparison(t *testing.T) {
	c := mustNew(t, compare.Rules{Capture: []compare.ValueRule{{Class: compare.ClassUUID}}})
	// Within one comparison, the pairing must still be consistent.
	r := c.Compare(jsonResp(200, `{"id":"`+orderA+`","ref":"`+orderA+`"}`), jsonResp(200, `{"id":"`+orderB+`","ref":"`+payB+`"}`), nil)
	if len(r.Differences) != 1 || r.Differences[0].Path != "/ref" {
		t.Fatalf("differences: %v", diffs(r))
	}
	// And it does not leak into the next one.
	r = c.Compare(jsonResp(200, `{"id":"`+orderA+`"}`), jsonResp(200, `{"id":"`+payB+`"}`), nil)
	if !r.Equal() {
		t.Errorf("a pairing leaked from an earlier comparison: %v", diffs(r))
	}
}

func TestLearnedIDsInsideStrings(t *testing.T) {
	c := mustNew(t, compare.Rules{})
	var ids compare.IDs
	if err := ids.Learn("cust-1", "cust-77"); err != nil {
		t.Fatal(err)
	}
	if err := ids.Learn("cust-1", "cust-78"); err == nil {
		t.Fatal("re-pairing A's value with another succeeded")
	}
	var ce *compare.ConflictError
	if err := ids.Learn("cust-2", "cust-77"); !errors.As(err, &ce) || ce.Side != "B" || ce.Other != "cust-1" {
		t.Fatalf("re-pairing B's value: %v", err)
	}
	tests := []struct {
		a, b string
		same bool
	}{
		{"/api/customers/cust-1", "/api/customers/cust-77", true},
		{"no customer cust-1 here", "no customer cust-77 here", true},
		{"cust-1", "cust-1", true},
		{"/api/customers/cust-1", "/api/customers/cust-78", false},
		{"xcust-1", "xcust-77", false}, // not at a token's start
		{"cust-10", "cust-770", false}, // cust-10 is another token than cust-1
		{"cust-1.", "cust-77.", true},
	}
	for _, tt := range tests {
		r := c.Compare(jsonResp(200, `{"s":"`+tt.a+`"}`), jsonResp(200, `{"s":"`+tt.b+`"}`), &ids)
		if r.Equal() != tt.same {
			t.Errorf("%q vs %q: equal %v, want %v", tt.a, tt.b, r.Equal(), tt.same)
		}
	}
}

func TestIDsForgetTheOldestBeyondMax(t *testing.T) {
	ids := compare.IDs{Max: 3}
	for i := range 5 {
		if err := ids.Learn(fmt.Sprint("a", i), fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	if ids.Len() != 3 {
		t.Fatalf("len %d, want 3", ids.Len())
	}
	if _, ok := ids.Lookup("a1"); ok {
		t.Error("a1 was kept beyond Max")
	}
	if b, ok := ids.Lookup("a4"); !ok || b != "b4" {
		t.Errorf("a4 → %q %v", b, ok)
	}
	// A forgotten B value may be paired again.
	if err := ids.Learn("a9", "b0"); err != nil {
		t.Errorf("pairing a forgotten value: %v", err)
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		a, b    []string
		want    []string
	}{
		{"content type", nil, []string{"Content-Type", "application/json"}, []string{"Content-Type", "application/problem+json"},
			[]string{"header Content-Type: changed: A application/json, B application/problem+json"}},
		{"only in A", nil, []string{"Idempotent-Replayed", "true"}, nil, []string{"header Idempotent-Replayed: only in A: true"}},
		{"only in B", nil, nil, []string{"Retry-After", "1"}, []string{"header Retry-After: only in B: 1"}},
		{"other headers are not compared by default", nil, []string{"X-Request-Id", "1", "Date", "x"}, []string{"X-Request-Id", "2"}, nil},
		{"a chosen list, any case", []string{"x-request-id"}, []string{"X-Request-Id", "1", "Location", "/a"}, []string{"X-Request-Id", "2"},
			[]string{"header X-Request-Id: changed: A 1, B 2"}},
		{"none", []string{}, []string{"Location", "/a"}, []string{"Location", "/b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, compare.Rules{Headers: tt.headers})
			ra, rb := compare.Response{Status: 200, Header: http.Header{}}, compare.Response{Status: 200, Header: http.Header{}}
			for i := 0; i+1 < len(tt.a); i += 2 {
				ra.Header.Set(tt.a[i], tt.a[i+1])
			}
			for i := 0; i+1 < len(tt.b); i += 2 {
				rb.Header.Set(tt.b[i], tt.b[i+1])
			}
			if got := diffs(c.Compare(ra, rb, nil)); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNonJSONBodies(t *testing.T) {
	c := mustNew(t, compare.Rules{Headers: []string{}})
	text := func(s string) compare.Response {
		return compare.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(s)}
	}
	// Text is compared byte for byte, even when it would parse as JSON.
	if r := c.Compare(text("1"), text("1.0"), nil); r.Equal() {
		t.Error("text bodies 1 and 1.0 compared as JSON")
	}
	if r := c.Compare(text("hello"), text("hello"), nil); !r.Equal() {
		t.Errorf("equal text: %v", diffs(r))
	}
	r := c.Compare(text("hello world"), text("hello there"), nil)
	if len(r.Differences) != 1 || r.Differences[0].Note != "the bodies differ from byte 6" {
		t.Errorf("differences: %+v", r.Differences)
	}
	// A JSON content type with a broken body falls back to bytes, and says so.
	r = c.Compare(jsonResp(200, `{"a":`), jsonResp(200, `{"a":1}`), nil)
	if len(r.Differences) != 1 || !strings.HasPrefix(r.Differences[0].Note, "A's body is not JSON") {
		t.Errorf("differences: %+v", r.Differences)
	}
	// Without a content type, parsing decides.
	none := func(s string) compare.Response { return compare.Response{Status: 200, Body: []byte(s)} }
	if r := c.Compare(none(`{"a":1}`), none(`{"a":1.0}`), nil); !r.Equal() {
		t.Errorf("untyped JSON: %v", diffs(r))
	}
	// Empty bodies.
	if r := c.Compare(none(""), none(""), nil); !r.Equal() {
		t.Errorf("empty bodies: %v", diffs(r))
	}
	if r := c.Compare(none(""), none("{}"), nil); r.Equal() {
		t.Error("an empty body equals {}")
	}
}

func TestLimits(t *testing.T) {
	c := mustNew(t, compare.Rules{MaxDifferences: 2, MaxValueLen: 8})
	r := c.Compare(jsonResp(200, `[1,2,3,4,"abcdefghijkl"]`), jsonResp(200, `[5,6,7,8,"x"]`), nil)
	if len(r.Differences) != 2 || r.Omitted != 3 || r.Equal() {
		t.Errorf("differences %v, omitted %d", diffs(r), r.Omitted)
	}
	r = c.Compare(jsonResp(200, `["abcdefghijkl"]`), jsonResp(200, `["x"]`), nil)
	if len(r.Differences) != 1 || r.Differences[0].A != `"abcdefg…` {
		t.Errorf("long value quoted as %q", r.Differences[0].A)
	}
	deep := mustNew(t, compare.Rules{MaxDepth: 3})
	r = deep.Compare(jsonResp(200, `[[[[1]]]]`), jsonResp(200, `[[[[1.0]]]]`), nil)
	if len(r.Differences) != 1 || !strings.Contains(r.Differences[0].Note, "nested too deeply") {
		t.Errorf("too deep: %+v", r.Differences)
	}
}

func TestNewRejectsBadRules(t *testing.T) {
	_, err := compare.New(compare.Rules{
		Ignore:     []string{"items/*", "/a/~2"},
		Equivalent: []compare.ValueRule{{At: "/x"}, {Class: "date"}, {Regexp: "("}},
		Capture:    []compare.ValueRule{{}, {Class: compare.ClassRFC3339}},
		Headers:    []string{""},
		MaxDepth:   -1,
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"items/*": must be empty or start with /`, `"/a/~2": ~ must be followed by 0 or 1`,
		"an equivalence needs a class or a regexp", `unknown class "date"`, "missing closing )", "needs at, class or regexp",
		"describes noise, not ids", "empty header name", "max_depth is -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestMerge(t *testing.T) {
	base := compare.Rules{Ignore: []string{"/a"}, MaxDifferences: 5}
	m := base.Merge(compare.Rules{Ignore: []string{"/b"}, MaxDepth: 9})
	if strings.Join(m.Ignore, ",") != "/a,/b" || m.MaxDifferences != 5 || m.MaxDepth != 9 || m.Headers != nil {
		t.Errorf("merged = %+v", m)
	}
	if len(base.Ignore) != 1 {
		t.Errorf("Merge changed its receiver: %+v", base)
	}
}

func TestLookup(t *testing.T) {
	doc := []byte(`{"lines":[{"sku":"A","quantity":2}],"a/b":{"~":true},"dup":1,"dup":2}`)
	tests := []struct{ ptr, want string }{
		{"", string(doc)},
		{"/lines/0/quantity", "2"},
		{"/lines/0", `{"sku":"A","quantity":2}`},
		{"/a~1b/~0", "true"},
		{"/dup", "2"},
	}
	for _, tt := range tests {
		got, err := compare.Lookup(doc, tt.ptr)
		if err != nil || string(got) != tt.want {
			t.Errorf("Lookup(%q) = %s, %v; want %s", tt.ptr, got, err, tt.want)
		}
	}
	for _, ptr := range []string{"/lines/1", "/lines/01", "/nope", "/lines/0/quantity/x", "/lines/-1"} {
		if _, err := compare.Lookup(doc, ptr); !errors.Is(err, compare.ErrNoValue) {
			t.Errorf("Lookup(%q): err = %v, want ErrNoValue", ptr, err)
		}
	}
	if _, err := compare.Lookup([]byte(`{`), ""); err == nil || errors.Is(err, compare.ErrNoValue) {
		t.Errorf("Lookup in broken JSON: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := mustNew(t, compare.Rules{Capture: []compare.ValueRule{{Class: compare.ClassUUID}}, Equivalent: []compare.ValueRule{{Class: compare.ClassRFC3339}}})
	var ids compare.IDs
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				a := fmt.Sprintf(`{"id":"0190a8a0-0000-7000-8000-%012d","n":%d,"t":"2026-01-01T00:00:00Z"}`, g*1000+i, i)
				b := fmt.Sprintf(`{"n":%d.0,"t":"2026-01-01T00:00:01Z","id":"0190a8a0-0000-7000-9000-%012d"}`, i, g*1000+i)
				if r := c.Compare(jsonResp(200, a), jsonResp(200, b), &ids); !r.Equal() {
					errs <- strings.Join(diffs(r), "; ")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if ids.Len() != 8*200 {
		t.Errorf("learnt %d pairs, want %d", ids.Len(), 8*200)
	}
}

func TestNoAllocationsWhenEqual(t *testing.T) {
	c := mustNew(t, compare.Rules{Ignore: []string{"/**/updated_at"}, Equivalent: []compare.ValueRule{{Class: compare.ClassRFC3339}}})
	a, b := jsonResp(200, sampleOrder(10, false)), jsonResp(200, sampleOrder(10, true))
	c.Compare(a, b, nil) // warm the kept buffers
	allocs := testing.AllocsPerRun(100, func() {
		if r := c.Compare(a, b, nil); !r.Equal() {
			t.Fatalf("differences: %v", diffs(r))
		}
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per equal comparison, want none", allocs)
	}
}
