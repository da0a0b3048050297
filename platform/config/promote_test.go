package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

const promoteFile = `# The shop's routes.
backends:
  monolith: { url: http://127.0.0.1:8081 }
  inventory: { url: http://127.0.0.1:8082 }   # the extracted service

routes:
  # Inventory reads: proving the service on live traffic.
  - name: inventory-reads
    match: { path: /api/inventory, methods: [GET, HEAD] }
    to: monolith          # stage 0
    shadow:
      to: inventory
      learn: 0.1          # learn the noise
    promote: { steps: [10, 50], sticky: header:X-Customer-ID }
  - match: { path: / }
    to: monolith
# the end
`

func promote(t *testing.T, data, route string) (string, config.Step) {
	t.Helper()
	out, step, err := config.PromoteRoute("config.yaml", []byte(data), route)
	if err != nil {
		t.Fatalf("promote %s: %v", route, err)
	}
	return string(out), step
}

// TestPromoteWalksTheStagesKeepingTheFile: shadow → canary 10% → canary 50% → full, each
// step changing only the lines it must: every comment and every other line stays.
func TestPromoteWalksTheStagesKeepingTheFile(t *testing.T) {
	s1, step := promote(t, promoteFile, "inventory-reads")
	if step.From != "shadow" || step.To != "canary 10%" || step.Candidate != "inventory" {
		t.Errorf("step %+v", step)
	}
	want1 := strings.Replace(promoteFile, "      learn: 0.1          # learn the noise\n",
		"      learn: 0.1          # learn the noise\n    canary: { to: inventory, percent: 10, sticky: header:X-Customer-ID }\n", 1)
	if s1 != want1 {
		t.Fatalf("shadow → canary 10%%:\n%s\nwant:\n%s", s1, want1)
	}
	s2, step := promote(t, s1, "inventory-reads")
	if step.To != "canary 50%" {
		t.Errorf("step %+v", step)
	}
	if want2 := strings.Replace(want1, "percent: 10,", "percent: 50,", 1); s2 != want2 {
		t.Fatalf("canary 10%% → 50%%:\n%s", s2)
	}
	s3, step := promote(t, s2, "/api/inventory")
	if step.To != "full" || !step.Full {
		t.Errorf("step %+v", step)
	}
	want3 := `# The shop's routes.
backends:
  monolith: { url: http://127.0.0.1:8081 }
  inventory: { url: http://127.0.0.1:8082 }   # the extracted service

routes:
  # Inventory reads: proving the service on live traffic.
  - name: inventory-reads
    match: { path: /api/inventory, methods: [GET, HEAD] }
    to: inventory          # stage 0
    fallback: monolith
    promote: { steps: [10, 50], sticky: header:X-Customer-ID }
  - match: { path: / }
    to: monolith
# the end
`
	if s3 != want3 {
		t.Fatalf("canary → full:\n%s\nwant:\n%s", s3, want3)
	}
	cfg, err := config.Parse("config.yaml", []byte(s3))
	if err != nil || cfg.Routes[0].To != "inventory" || cfg.Routes[0].Stage() != "" {
		t.Fatalf("after full: %+v %v", cfg.Routes[0], err)
	}
	if _, _, err := config.PromoteRoute("config.yaml", []byte(s3), "inventory-reads"); !errors.Is(err, config.ErrNothingToPromote) {
		t.Errorf("promoting a full route: %v", err)
	}
}

func TestPromoteRefusesWhatItCannotEdit(t *testing.T) {
	flow := strings.Replace(promoteFile, `  - match: { path: / }
    to: monolith`, `  - { match: { path: /x }, to: monolith, shadow: { to: inventory, methods: [GET] } }
  - match: { path: / }
    to: monolith`, 1)
	if _, _, err := config.PromoteRoute("config.yaml", []byte(flow), "/x"); err == nil || !strings.Contains(err.Error(), "flow mapping") {
		t.Errorf("a flow route: %v", err)
	}
	if _, _, err := config.PromoteRoute("config.yaml", []byte(promoteFile), "nope"); err == nil || !strings.Contains(err.Error(), `"inventory-reads"`) {
		t.Errorf("an unknown route: %v", err)
	}
	if _, _, err := config.PromoteRoute("config.yaml", []byte("routes: ["), "x"); err == nil {
		t.Error("a broken file was promoted")
	}
}

func TestPercentsWithTwoDecimals(t *testing.T) {
	for _, c := range []struct {
		pct string
		ok  bool
	}{{"0.29", true}, {"12.5", true}, {"0.01", true}, {"33.33", true}, {"0.001", false}, {"12.345", false}} {
		_, err := config.Parse("c.yaml", []byte(`
backends: { m: { url: "http://127.0.0.1:1" }, s: { url: "http://127.0.0.1:2" } }
routes:
  - match: { path: / }
    to: m
    canary: { to: s, percent: `+c.pct+` }
`))
		if (err == nil) != c.ok {
			t.Errorf("percent %s: %v", c.pct, err)
		}
	}
}
