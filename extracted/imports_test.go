// Package extracted_test holds the tests that concern every extracted service at once.
package extracted_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ficus-project/ficus/"

// TestNoServiceImportsTheMonolith: a service is the new home of its capability, and the
// module it replaces is deleted when the migration ends, so nothing under extracted/
// depends on monolith/ (or on the facade), directly or through another package. It reads
// the real import graph, tests included, with go list -deps.
func TestNoServiceImportsTheMonolith(t *testing.T) {
	pkgs := list(t, "./...")
	if len(pkgs) < 2 {
		t.Fatalf("go list found %d packages under extracted/: %v", len(pkgs), pkgs)
	}
	for _, pkg := range pkgs {
		for _, dep := range list(t, "-deps", "-test", pkg) {
			for _, banned := range []string{module + "monolith", module + "facade", module + "cmd"} {
				if dep == banned || strings.HasPrefix(dep, banned+"/") {
					t.Errorf("%s depends on %s: extracted code must survive the module's deletion", pkg, dep)
				}
			}
		}
	}
}

// list runs go list with args and returns the import paths it prints.
func list(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}}"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %v: %v\n%s", args, err, stderr)
	}
	return strings.Fields(string(out))
}
