package scenarios_test

import (
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/compare/scenarios"
)

// Every suite loads (files parse, every ${name} is defined), includes the common scenarios,
// and has a race that checks its outcome.
func TestSuitesLoad(t *testing.T) {
	for _, name := range scenarios.Names() {
		s, err := scenarios.Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Name != name || len(s.Scenarios) < 2 || s.Scenarios[0].Name != "health" {
			t.Errorf("%s: %d scenarios, first %q", name, len(s.Scenarios), s.Scenarios[0].Name)
		}
		if name == "customers" {
			continue
		}
		race := false
		for _, sc := range s.Scenarios {
			for _, st := range sc.Steps {
				race = race || (st.Concurrent >= 200 && st.Expect.Statuses != nil)
			}
		}
		if !race {
			t.Errorf("%s: no 200-way race with exact outcome counts", name)
		}
	}
	if _, err := scenarios.Load("shipping"); err == nil || !strings.Contains(err.Error(), `no suite "shipping"`) {
		t.Errorf("unknown suite: %v", err)
	}
}
