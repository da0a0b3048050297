// Package route matches requests to the facade's routes: longest path prefix on whole
// segments, then method and header conditions.
//
// The router is immutable once built, so a reload builds a new one and swaps it in while
// requests still in flight keep matching against the one they started with.
package route

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
)

// Rule is one route's match conditions.
type Rule struct {
	// Path is the prefix matched on segment boundaries: "/api/inventory" matches
	// "/api/inventory" and "/api/inventory/items/1", never "/api/inventoryx". "/" matches
	// every path. A trailing slash is ignored.
	Path string
	// Methods, if not empty, restricts the rule to these methods (exact, upper case).
	Methods []string
	// Headers, if not empty, must all be present on the request, each with one value equal
	// to the one given.
	Headers map[string]string
}

// Router picks the rule that serves a request.
type Router struct {
	rules []compiled
}

type compiled struct {
	index   int
	path    string
	methods []string
	headers []header
}

type header struct{ key, value string }

// New compiles rules into a router. Match reports rules by their index in rules.
func New(rules []Rule) *Router {
	r := &Router{rules: make([]compiled, len(rules))}
	for i, rule := range rules {
		c := compiled{index: i, path: normalize(rule.Path), methods: append([]string(nil), rule.Methods...)}
		for k, v := range rule.Headers {
			c.headers = append(c.headers, header{key: http.CanonicalHeaderKey(k), value: v})
		}
		sort.Slice(c.headers, func(a, b int) bool { return c.headers[a].key < c.headers[b].key })
		r.rules[i] = c
	}
	// Longest path first; for the same path, the more specific rule first (more header
	// conditions, then a method condition); then the order of the config.
	sort.SliceStable(r.rules, func(a, b int) bool {
		x, y := r.rules[a], r.rules[b]
		if len(x.path) != len(y.path) {
			return len(x.path) > len(y.path)
		}
		if len(x.headers) != len(y.headers) {
			return len(x.headers) > len(y.headers)
		}
		return len(x.methods) > 0 && len(y.methods) == 0
	})
	return r
}

func normalize(p string) string {
	if p == "" {
		return "/"
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// Match returns the index of the rule that serves a request with this method, cleaned path
// (see Clean) and headers, or -1 when none does.
func (r *Router) Match(method, cleanPath string, h http.Header) int {
	for i := range r.rules {
		c := &r.rules[i]
		if !HasSegmentPrefix(cleanPath, c.path) {
			continue
		}
		if len(c.methods) > 0 && !contains(c.methods, method) {
			continue
		}
		if !headersMatch(c.headers, h) {
			continue
		}
		return c.index
	}
	return -1
}

// HasSegmentPrefix reports whether prefix is p or a run of whole leading segments of p.
func HasSegmentPrefix(p, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(p, "/")
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func headersMatch(want []header, h http.Header) bool {
	for _, w := range want {
		found := false
		for _, v := range h[w.key] {
			if v == w.value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ErrAmbiguousPath is returned by Clean for paths that different servers would read
// differently, so routing on one reading could deliver the request to a backend another
// reading would not: encoded slashes, backslashes, NUL bytes, and dot segments hidden
// behind ";" parameters.
var ErrAmbiguousPath = errors.New("ambiguous request path")

// Clean returns the path a request is routed on and forwarded with: u.Path (already
// percent-decoded, so "%2e%2e" is "..") with "." and ".." segments resolved and repeated
// slashes collapsed. A trailing slash is kept. The facade forwards exactly this path, so
// the backend sees the path the route was chosen for.
func Clean(u *url.URL) (string, error) {
	p := u.Path
	if p == "" || p[0] != '/' {
		return "", ErrAmbiguousPath
	}
	if u.RawPath != "" && containsFold(u.RawPath, "%2f") {
		return "", ErrAmbiguousPath
	}
	if strings.ContainsAny(p, "\\\x00") {
		return "", ErrAmbiguousPath
	}
	c := path.Clean(p)
	if c != "/" && p[len(p)-1] == '/' {
		c += "/"
	}
	if strings.IndexByte(c, ';') >= 0 {
		for _, seg := range strings.Split(c, "/") {
			name, _, _ := strings.Cut(seg, ";")
			if name == "." || name == ".." {
				return "", ErrAmbiguousPath
			}
		}
	}
	return c, nil
}

// containsFold reports whether s contains the lower-case ASCII substr in any case.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}
