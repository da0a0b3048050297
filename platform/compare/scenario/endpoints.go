package scenario

import (
	"fmt"
	"regexp"
	"strings"
)

// endpointTemplate is a "METHOD /path/{param}" template split into segments.
type endpointTemplate struct {
	name     string
	method   string
	segs     []string // "" for a {param}
	literals int
}

func parseEndpoints(list []string) ([]endpointTemplate, error) {
	var out []endpointTemplate
	for _, e := range list {
		method, path, ok := strings.Cut(e, " ")
		if !ok || method == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("endpoint %q: want METHOD /path/{param}", e)
		}
		t := endpointTemplate{name: e, method: strings.ToUpper(method)}
		for _, s := range strings.Split(path[1:], "/") {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				t.segs = append(t.segs, "")
				continue
			}
			t.segs = append(t.segs, s)
			t.literals++
		}
		out = append(out, t)
	}
	return out, nil
}

// varRef finds ${name} references, to write a step's path as a template.
var varRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// endpointOf names a request's endpoint: the step's own, the most specific template that
// matches the path sent, or the step's path written as a template.
func (r *runner) endpointOf(st *Step, sent Sent) string {
	if st.Endpoint != "" {
		return st.Endpoint
	}
	if i := r.template(sent.Method, sent.Path); i >= 0 {
		return r.endpoints[i].name
	}
	tmpl, _, _ := strings.Cut(st.Request.Path, "?")
	return st.Request.Method + " " + varRef.ReplaceAllString(tmpl, "{$1}")
}

// template returns the index of the most specific template matching a request, or -1.
func (r *runner) template(method, target string) int {
	path, _, _ := strings.Cut(target, "?")
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	best := -1
	for i, t := range r.endpoints {
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
		if match && (best < 0 || t.literals > r.endpoints[best].literals) {
			best = i
		}
	}
	return best
}
