package monolith_test

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// example is one row of docs/api.md's Examples table.
type example struct {
	line         int
	method, path string
	body         string
	status       int
	code, detail string
}

var (
	exampleRow    = regexp.MustCompile("^\\| `(GET|POST|PUT) ([^`]+)` \\| (?:`([^`]*)`)? *\\| (\\d{3})(?: `([a-z_]+)`)?(?: \"([^\"]*)\")? \\|$")
	examplesTitle = "## Examples"
)

func readExamples(t *testing.T) []example {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case line == examplesTitle:
			in = true
			continue
		case in && strings.HasPrefix(line, "## "):
			in = false
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		m := exampleRow.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("docs/api.md:%d: an example row this test cannot read: %s", i+1, line)
		}
		status, _ := strconv.Atoi(m[4])
		out = append(out, example{line: i + 1, method: m[1], path: m[2], body: m[3], status: status, code: m[5], detail: m[6]})
	}
	if len(out) == 0 {
		t.Fatal("docs/api.md has no Examples table")
	}
	return out
}

// TestAPIDocExamples sends every example of docs/api.md, in order, to a freshly seeded
// monolith, and checks the documented status, problem code and detail.
func TestAPIDocExamples(t *testing.T) {
	s := newShop(t)
	demo, err := s.m.Seed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, c := range demo.Customers {
		name, _, _ := strings.Cut(c.Email, "@")
		vars["${"+name+"}"] = c.ID
	}
	for _, ex := range readExamples(t) {
		body, path := ex.body, ex.path
		for k, v := range vars {
			body, path = strings.ReplaceAll(body, k, v), strings.ReplaceAll(path, k, v)
		}
		if strings.Contains(body+path, "${") {
			t.Fatalf("docs/api.md:%d: unknown placeholder in %s %s", ex.line, path, body)
		}
		var header []string
		if ex.method == "POST" && strings.HasPrefix(path, "/api/orders") {
			header = []string{"Idempotency-Key", "docs-example-" + strconv.Itoa(ex.line)}
		}
		r := s.do(ex.method, path, body, header...)
		if r.status != ex.status {
			t.Errorf("docs/api.md:%d: %s %s answered %d, the doc says %d: %s", ex.line, ex.method, ex.path, r.status, ex.status, r.body)
			continue
		}
		if ex.code == "" && ex.status < 400 {
			continue
		}
		p := r.json(t)
		if ex.code != "" && p["code"] != ex.code {
			t.Errorf("docs/api.md:%d: %s %s answered code %v, the doc says %s", ex.line, ex.method, ex.path, p["code"], ex.code)
		}
		if ex.detail != "" && p["detail"] != ex.detail {
			t.Errorf("docs/api.md:%d: %s %s answered detail %q, the doc says %q", ex.line, ex.method, ex.path, p["detail"], ex.detail)
		}
	}
}
