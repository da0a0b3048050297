package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

// withServices is a config with both services and their backends; routes and modules are
// appended by each case.
const withServices = `
backends:
  monolith: { url: http://127.0.0.1:8081 }
  inventory: { url: http://127.0.0.1:8082 }
  payments: { url: http://127.0.0.1:8083 }
services:
  inventory: { listen: 127.0.0.1:8082 }
  payments: { listen: 127.0.0.1:8083 }
`

// TestWritesToAServiceWhoseModuleIsLocalAreRefused: until the monolith's orders reach a
// capability through its service, a route that sends that capability's writes to the service
// would split its data; reads may go there. The check follows the facade's choice of route.
func TestWritesToAServiceWhoseModuleIsLocalAreRefused(t *testing.T) {
	tests := []struct {
		name, yaml string
		// field and methods are what the refusal names; "" when the config is valid.
		field, methods string
	}{
		{name: "reads only", yaml: `
routes:
  - match: { path: /api/inventory, methods: [GET, HEAD] }
    to: inventory
  - match: { path: / }
    to: monolith`},
		{name: "everything", yaml: `
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: / }
    to: monolith`, field: "routes[0].to", methods: "POST, PUT, PATCH, DELETE"},
		{name: "some writes", yaml: `
routes:
  - match: { path: /api/payments, methods: [GET, POST] }
    to: payments
  - match: { path: / }
    to: monolith`, field: "routes[0].to", methods: "POST"},
		{name: "a path under the capability", yaml: `
routes:
  - match: { path: /api/inventory/reservations, methods: [POST] }
    to: inventory
  - match: { path: / }
    to: monolith`, field: "routes[0].to", methods: "POST"},
		{name: "a broad route whose writes a narrower one keeps", yaml: `
routes:
  - match: { path: /api/inventory }
    to: monolith
  - match: { path: / }
    to: inventory`},
		{name: "a broad route that gets the writes a read route lets through", yaml: `
routes:
  - match: { path: /api/inventory, methods: [GET, HEAD] }
    to: monolith
  - match: { path: / }
    to: inventory`, field: "routes[1].to", methods: "POST, PUT, PATCH, DELETE"},
		{name: "a header route tried first", yaml: `
routes:
  - match: { path: /api/payments, headers: { X-Beta: "1" } }
    to: payments
  - match: { path: /api/payments }
    to: monolith
  - match: { path: / }
    to: monolith`, field: "routes[0].to", methods: "POST, PUT, PATCH, DELETE"},
		{name: "a canary", yaml: `
routes:
  - match: { path: /api/payments }
    to: monolith
    canary: { to: payments, percent: 10 }
  - match: { path: / }
    to: monolith`, field: "routes[0].canary.to", methods: "POST, PUT, PATCH, DELETE"},
		{name: "a canary at 0%", yaml: `
routes:
  - match: { path: /api/payments }
    to: monolith
    canary: { to: payments, percent: 0 }
  - match: { path: / }
    to: monolith`},
		{name: "a backend named otherwise at the service's address", yaml: `
backends:
  inv2: { url: http://127.0.0.1:8082 }
routes:
  - match: { path: /api/inventory }
    to: inv2
  - match: { path: / }
    to: monolith`, field: "routes[0].to", methods: "POST, PUT, PATCH, DELETE"},
		{name: "the module is remote", yaml: `
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: / }
    to: monolith
monolith: { modules: { inventory: remote } }`},
		{name: "the other capability's module is remote", yaml: `
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: / }
    to: monolith
monolith: { modules: { payments: remote } }`, field: "routes[0].to", methods: "POST, PUT, PATCH, DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := withServices + tt.yaml
			if strings.Contains(tt.yaml, "\nbackends:") {
				// Merge the extra backend into the one backends mapping.
				extra := strings.SplitN(strings.SplitN(tt.yaml, "\nbackends:\n", 2)[1], "\nroutes:", 2)
				doc = strings.Replace(withServices, "backends:\n", "backends:\n"+extra[0]+"\n", 1) + "\nroutes:" + extra[1]
			}
			_, err := config.Parse("c.yaml", []byte(doc))
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 {
				t.Fatalf("want one problem at %s, got %v", tt.field, err)
			}
			p := cerr.Problems[0]
			if p.Field != tt.field || p.Line == 0 || !strings.Contains(p.Msg, "sends "+tt.methods+" requests under /api/") ||
				!strings.Contains(p.Msg, "is local") || !strings.Contains(p.Msg, "methods: [GET, HEAD]") {
				t.Errorf("problem = %s", p)
			}
		})
	}

	// A config without services says nothing about them: its backends are whatever it says.
	if _, err := config.Parse("c.yaml", []byte(`
backends: { monolith: { url: http://127.0.0.1:8081 }, inventory: { url: http://127.0.0.1:9 } }
routes: [{ match: { path: / }, to: inventory }]
`)); err != nil {
		t.Errorf("a config without services was refused: %v", err)
	}
}

// TestEachServiceHasItsOwnDatabase: a service's database that is the monolith's (or the
// other service's), however its path is written, is refused.
func TestEachServiceHasItsOwnDatabase(t *testing.T) {
	doc := `
backends: { monolith: { url: http://127.0.0.1:8081 } }
routes: [{ match: { path: / }, to: monolith }]
monolith: { database: sqlite:data/shop.db }
services:
  inventory: { listen: 127.0.0.1:8082, database: sqlite:./data/../data/shop.db }
  payments: { listen: 127.0.0.1:8083, database: sqlite:data/payments.db }
`
	_, err := config.Parse("c.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "services.inventory.database: is also monolith.database") {
		t.Errorf("a service on the monolith's database: %v", err)
	}
	doc = strings.Replace(doc, "sqlite:./data/../data/shop.db", "sqlite:data/inventory.db", 1)
	if _, err := config.Parse("c.yaml", []byte(doc)); err != nil {
		t.Errorf("services on their own databases: %v", err)
	}
}

// TestRepoConfigMigrationStages: the stages config.yaml has ready as comments are what it
// says. Stage 1 (the "#1" lines uncommented) is valid and sends only reads to the services;
// stage 2 (the "# stage 0" lines out, the "#2" lines in) is valid; and stage 2's routes with
// the modules still local are refused, naming the line and what to do.
func TestRepoConfigMigrationStages(t *testing.T) {
	path := filepath.Join("..", "..", "config.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stage := func(n string, keepStage0 bool) string {
		var out []string
		for _, line := range strings.Split(string(raw), "\n") {
			switch {
			case strings.HasSuffix(line, "# stage 0") && !keepStage0:
				continue
			case strings.HasPrefix(strings.TrimSpace(line), "#1 ") && n >= "1",
				strings.HasPrefix(strings.TrimSpace(line), "#2 ") && n >= "2":
				line = strings.Replace(line, "#"+strings.TrimSpace(line)[1:2]+" ", "", 1)
			}
			out = append(out, line)
		}
		return strings.Join(out, "\n")
	}
	if n := strings.Count(string(raw), "\n  #1 "); n != 6 {
		t.Fatalf("config.yaml has %d stage-1 lines, want the 6 this test knows", n)
	}

	cfg, err := config.Parse(path, []byte(stage("1", true)))
	if err != nil {
		t.Fatalf("stage 1: %v", err)
	}
	toService := map[string]bool{}
	for _, r := range cfg.Routes {
		if r.To == "inventory" || r.To == "payments" {
			toService[r.Match.Path] = true
			if strings.Join(r.Match.Methods, ",") != "GET,HEAD" || r.Fallback != "monolith" {
				t.Errorf("stage 1 route %s → %s: methods %v, fallback %q", r.Match.Path, r.To, r.Match.Methods, r.Fallback)
			}
		}
	}
	if !toService["/api/inventory"] || !toService["/api/payments"] {
		t.Errorf("stage 1 sends reads of %v to the services, want both capabilities", toService)
	}

	cfg, err = config.Parse(path, []byte(stage("2", false)))
	if err != nil {
		t.Fatalf("stage 2: %v", err)
	}
	if cfg.Monolith.Modules["inventory"] != config.ModuleRemote || cfg.Monolith.Modules["payments"] != config.ModuleRemote {
		t.Errorf("stage 2 modules = %v, want inventory and payments remote", cfg.Monolith.Modules)
	}

	// Stage 2's routes, the modules left local.
	early := stage("2", false)
	for _, capability := range []string{"inventory", "payments"} {
		early = strings.Replace(early, "    "+capability+": remote\n", "    "+capability+": local\n", 1)
	}
	_, err = config.Parse(path, []byte(early))
	var cerr *config.Error
	if !errors.As(err, &cerr) || len(cerr.Problems) != 2 {
		t.Fatalf("stage 2 routes with local modules: want 2 problems, got %v", err)
	}
	for i, capability := range []string{"inventory", "payments"} {
		p := cerr.Problems[i]
		if p.File != path || p.Line == 0 || !strings.Contains(p.Msg, "under /api/"+capability+" to backend \""+capability+"\"") ||
			!strings.Contains(p.Msg, "monolith.modules."+capability+" is local") {
			t.Errorf("problem %d = %s", i, p)
		}
	}
}
