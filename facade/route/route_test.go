package route

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func testRules() []Rule {
	return []Rule{
		{Path: "/"},              // 0
		{Path: "/api/inventory"}, // 1
		{Path: "/api/inventory", Methods: []string{"GET"}},                   // 2
		{Path: "/api/orders/"},                                               // 3
		{Path: "/api/inventory/items"},                                       // 4
		{Path: "/api/payments", Headers: map[string]string{"x-canary": "1"}}, // 5
		{Path: "/api/payments"},                                              // 6
		{Path: "/api/payments", Methods: []string{"POST"}, Headers: map[string]string{"X-Canary": "1"}}, // 7
	}
}

func TestMatch(t *testing.T) {
	r := New(testRules())
	tests := []struct {
		method, path string
		header       http.Header
		want         int
	}{
		{"GET", "/", nil, 0},
		{"GET", "/other", nil, 0},
		{"GET", "/api/inventory", nil, 2},
		{"POST", "/api/inventory", nil, 1},
		{"POST", "/api/inventory/x", nil, 1},
		{"GET", "/api/inventoryx", nil, 0},
		{"GET", "/api/inventory/items", nil, 4},
		{"GET", "/api/inventory/itemsx", nil, 2},
		{"GET", "/api/orders", nil, 3},
		{"GET", "/api/orders/1", nil, 3},
		{"GET", "/api/ordersx", nil, 0},
		{"GET", "/api/payments", nil, 6},
		{"GET", "/api/payments", http.Header{"X-Canary": {"1"}}, 5},
		{"GET", "/api/payments", http.Header{"X-Canary": {"2"}}, 6},
		{"GET", "/api/payments", http.Header{"X-Canary": {"2", "1"}}, 5},
		{"POST", "/api/payments/p", http.Header{"X-Canary": {"1"}}, 7},
	}
	for _, tt := range tests {
		if got := r.Match(tt.method, tt.path, tt.header); got != tt.want {
			t.Errorf("Match(%s %s %v) = %d, want %d", tt.method, tt.path, tt.header, got, tt.want)
		}
	}
}

func TestMatchNoDefault(t *testing.T) {
	r := New([]Rule{{Path: "/api"}})
	if got := r.Match("GET", "/other", nil); got != -1 {
		t.Fatalf("Match = %d, want -1", got)
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		err  bool
	}{
		{"/api/inventory", "/api/inventory", false},
		{"/api/inventory/", "/api/inventory/", false},
		{"/api/inventory/../orders", "/api/orders", false},
		{"/api/inventory/%2e%2e/orders", "/api/orders", false},
		{"/api/inventory/%2E%2E/orders", "/api/orders", false},
		{"//api//orders", "/api/orders", false},
		{"/api/./inventory", "/api/inventory", false},
		{"/../../etc/passwd", "/etc/passwd", false},
		{"/api/inventory%2f..%2forders", "", true},
		{"/api/inventory%2F..%2Forders", "", true},
		{"/api/inventory/..%5corders", "", true},
		{"/api/inventory\\..\\orders", "", true},
		{"/api/inventory/..;/orders", "", true},
		{"/api/inventory/;x/../orders", "/api/inventory/orders", false},
		{"/a%20b", "/a b", false},
	}
	for _, tt := range tests {
		u, err := url.ParseRequestURI(tt.raw)
		if err != nil {
			t.Fatalf("parse %q: %v", tt.raw, err)
		}
		got, err := Clean(u)
		if tt.err {
			if !errors.Is(err, ErrAmbiguousPath) {
				t.Errorf("Clean(%q) = %q, %v; want ErrAmbiguousPath", tt.raw, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

// FuzzMatch checks that whatever the request target, the path the facade routes and
// forwards is clean, and a matched rule's path is a whole-segment prefix of it, and no
// longer unconditional rule also matches.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/", "/api/inventory/../orders", "//api//inventory", "/api/inventory%2f..", "/api/inventoryx",
		"/api/%2e%2e/api/orders", "/api/orders/./1?x=1", "/api/payments/..;/x", "/a/b/c/../../api/inventory/items/"} {
		f.Add(s)
	}
	rules := testRules()[1:] // no default route, so misses are exercised too
	r := New(rules)
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		p, err := Clean(u)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("Clean(%q) = %q: not absolute", raw, p)
		}
		for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
			if seg == "." || seg == ".." || (seg == "" && p != "/") {
				t.Fatalf("Clean(%q) = %q: has segment %q", raw, p, seg)
			}
		}
		i := r.Match("GET", p, nil)
		if i < 0 {
			return
		}
		rp := normalize(rules[i].Path)
		if !HasSegmentPrefix(p, rp) {
			t.Fatalf("%q (cleaned %q) matched %q, not a segment prefix", raw, p, rp)
		}
		if rp != "/" && len(p) > len(rp) && p[len(rp)] != '/' {
			t.Fatalf("%q matched %q across a segment", p, rp)
		}
		for j, o := range rules {
			op := normalize(o.Path)
			if len(o.Methods) == 0 && len(o.Headers) == 0 && len(op) > len(rp) && HasSegmentPrefix(p, op) {
				t.Fatalf("%q matched %q, but the longer %q (rule %d) also matches", p, rp, op, j)
			}
		}
	})
}
