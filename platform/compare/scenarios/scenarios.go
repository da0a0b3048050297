// Package scenarios holds the shop's comparison suites, one per capability, as embedded
// scenario files (see package scenario for the format and docs/compare.md for the suites).
// Each suite is the capability's own scenarios plus the common ones every server must pass.
package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"

	"github.com/ficus-project/ficus/platform/compare/scenario"
)

//go:embed */*.yaml
var files embed.FS

// Names lists the suites: the two capabilities being extracted first, then the rest.
func Names() []string { return []string{"inventory", "payments", "orders", "customers"} }

// FS returns the scenario files: common/*.yaml and one directory per suite.
func FS() fs.FS { return files }

// Load loads the named suite.
func Load(name string) (*scenario.Suite, error) {
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("loading scenarios: no suite %q (have %v)", name, Names())
	}
	s, err := scenario.Load(files, "common", name)
	if err != nil {
		return nil, err
	}
	s.Name = name
	return s, nil
}
