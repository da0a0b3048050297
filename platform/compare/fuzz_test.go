package compare_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ficus-project/ficus/platform/compare"
)

// FuzzCompareJSON checks the JSON diff against encoding/json as an oracle: two valid
// documents are equal exactly when they decode to the same values (numbers compared
// exactly), a document equals itself and its re-encoding (other key order, escapes and
// spacing), and the verdict does not depend on which side is A.
func FuzzCompareJSON(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1.0}`},
		{`{"c":9007199254740993}`, `{"c":9007199254740992}`},
		{`[1e0,10e-1,-0,0.0]`, `[1,1,0,0]`},
		{`{"s":"\u00e9\ud83d\ude00\/"}`, `{"s":"é😀/"}`},
		{`{"a":{"b":{"c":[null,true,false]}}}`, `{"a":{"b":{"c":[null,true]}}}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`"x"`, `1`},
		{`{"a/b~c":1}`, `{"a/b~c":2}`},
		{`[`, `[]`},
		{``, `null`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	c, err := compare.New(compare.Rules{MaxDepth: 10001})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ra, rb := compare.Response{Status: 200, Body: a}, compare.Response{Status: 200, Body: b}
		if r := c.Compare(ra, ra, nil); !r.Equal() {
			t.Fatalf("a document differs from itself: %v", r.Differences)
		}
		ab, ba := c.Compare(ra, rb, nil), c.Compare(rb, ra, nil)
		if ab.Equal() != ba.Equal() || len(ab.Differences) != len(ba.Differences) {
			t.Fatalf("asymmetric: A→B %v, B→A %v", ab.Differences, ba.Differences)
		}
		for i, d := range ab.Differences {
			if e := ba.Differences[i]; e.Path != d.Path || e.A != d.B || e.B != d.A {
				t.Fatalf("asymmetric difference: %+v vs %+v", d, e)
			}
		}
		va, okA := decode(a)
		vb, okB := decode(b)
		if okA {
			again, err := json.Marshal(va)
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Compare(ra, compare.Response{Status: 200, Body: again}, nil); !r.Equal() {
				t.Fatalf("%s differs from its re-encoding %s: %v", a, again, r.Differences)
			}
		}
		if okA && okB {
			want, decided := same(va, vb)
			if decided && ab.Equal() != want {
				t.Fatalf("Compare(%s, %s) equal = %v, encoding/json says %v: %v", a, b, ab.Equal(), want, ab.Differences)
			}
		}
	})
}

// decode decodes valid UTF-8 JSON with numbers kept as written. Invalid UTF-8 is left out:
// encoding/json replaces it, the engine compares it byte for byte.
func decode(b []byte) (any, bool) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// same compares decoded values, numbers exactly. decided is false when a number's exponent
// is too large to compute with quickly.
func same(a, b any) (equal, decided bool) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false, true
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return false, true
			}
			if eq, dec := same(v, w); !eq || !dec {
				return eq, dec
			}
		}
		return true, true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false, true
		}
		for i := range x {
			if eq, dec := same(x[i], y[i]); !eq || !dec {
				return eq, dec
			}
		}
		return true, true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false, true
		}
		if x == y {
			return true, true
		}
		if hugeExponent(string(x)) || hugeExponent(string(y)) {
			return false, false
		}
		rx, okx := new(big.Rat).SetString(string(x))
		ry, oky := new(big.Rat).SetString(string(y))
		if !okx || !oky {
			return false, false
		}
		return rx.Cmp(ry) == 0, true
	default:
		return a == b, true
	}
}

func hugeExponent(n string) bool {
	i := strings.IndexAny(n, "eE")
	return i >= 0 && len(strings.TrimLeft(strings.TrimLeft(n[i+1:], "+-"), "0")) > 3
}
