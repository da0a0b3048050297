package scenario

import (
	"regexp"
	"strings"
)

// varRef finds ${name} references, to write a step's path as a template.
var varRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// endpointOf names a request's endpoint: the step's own, the most specific template that
// matches the path sent, or the step's path written as a template.
func (r *runner) endpointOf(st *Step, sent Sent) string {
	if st.Endpoint != "" {
		return st.Endpoint
	}
	if name, ok := r.endpoints.Match(sent.Method, sent.Path); ok {
		return name
	}
	tmpl, _, _ := strings.Cut(st.Request.Path, "?")
	return st.Request.Method + " " + varRef.ReplaceAllString(tmpl, "{$1}")
}

// endpointMatches reports whether a template names the request.
func (r *runner) endpointMatches(method, path string) bool {
	_, ok := r.endpoints.Match(method, path)
	return ok
}
