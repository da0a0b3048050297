package compare

import (
	"fmt"
	"strings"
)

// Endpoints names requests by endpoint, the method and path template of an API operation
// ("GET /api/inventory/items/{sku}"), so that reports add up per operation rather than per
// URL. It is immutable once built and safe for concurrent use.
type Endpoints struct {
	templates []endpointTemplate
}

// endpointTemplate is a "METHOD /path/{param}" template split into segments.
type endpointTemplate struct {
	name     string
	method   string
	segs     []string // "" for a {param}
	literals int
}

// NewEndpoints compiles templates written "METHOD /path/{param}", such as the OpenAPI
// document's operations.
func NewEndpoints(templates []string) (*Endpoints, error) {
	e := &Endpoints{}
	for _, s := range templates {
		method, path, ok := strings.Cut(s, " ")
		if !ok || method == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("endpoint %q: want METHOD /path/{param}", s)
		}
		t := endpointTemplate{name: s, method: strings.ToUpper(method)}
		for _, seg := range strings.Split(path[1:], "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				t.segs = append(t.segs, "")
				continue
			}
			t.segs = append(t.segs, seg)
			t.literals++
		}
		e.templates = append(e.templates, t)
	}
	return e, nil
}

// Len returns how many templates there are.
func (e *Endpoints) Len() int {
	if e == nil {
		return 0
	}
	return len(e.templates)
}

// Match returns the name of the most specific template matching a request (its method and
// its path, a query allowed), and whether one did.
func (e *Endpoints) Match(method, target string) (string, bool) {
	if e == nil {
		return "", false
	}
	path, _, _ := strings.Cut(target, "?")
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	best := -1
	for i, t := range e.templates {
		if t.method != method || len(t.segs) != len(segs) {
			continue
		}
		match := true
		for j, s := range t.segs {
			if (s == "" && segs[j] == "") || (s != "" && s != segs[j]) {
				match = false
				break
			}
		}
		if match && (best < 0 || t.literals > e.templates[best].literals) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return e.templates[best].name, true
}

// Name names a request's endpoint: its template when one matches, else its path with each
// segment that holds a digit written {id} ("GET /api/orders/{id}"), so that ids do not
// make an endpoint of every request.
func (e *Endpoints) Name(method, target string) string {
	if name, ok := e.Match(method, target); ok {
		return name
	}
	path, _, _ := strings.Cut(target, "?")
	var b strings.Builder
	b.Grow(len(method) + 1 + len(path))
	b.WriteString(method)
	b.WriteByte(' ')
	if path == "" {
		b.WriteByte('/')
	}
	for i, seg := range strings.Split(path, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if strings.ContainsAny(seg, "0123456789") {
			b.WriteString("{id}")
			continue
		}
		b.WriteString(seg)
	}
	return b.String()
}
