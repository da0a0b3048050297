package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func TestRepoConfigIsValid(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if got := cfg.Backends["inventory"].Timeout.D(); got != 2*time.Second {
		t.Errorf("inventory timeout = %v, want 2s", got)
	}
	if got := cfg.Backends["monolith"].Retry.Attempts; got != 1 {
		t.Errorf("default attempts = %d, want 1", got)
	}
	if got := cfg.Monolith.Modules["orders"]; got != config.ModuleLocal {
		t.Errorf("orders module = %q, want local by default", got)
	}
	if got := cfg.Routes[0].Name; got != "/api/inventory" {
		t.Errorf("route name defaults to path, got %q", got)
	}
}

const valid = `
backends:
  monolith: { url: http://127.0.0.1:8081 }
  inventory: { url: http://127.0.0.1:8082, timeout: 2s }
routes:
  - match: { path: /api/inventory, methods: [get, HEAD] }
    to: monolith
    shadow: { to: inventory, ignore: [/updated_at] }
  - match: { path: / }
    to: monolith
`

func TestParseDefaults(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if r.Match.Methods[0] != "GET" {
		t.Errorf("methods are upper-cased, got %v", r.Match.Methods)
	}
	if r.Shadow.Sample == nil || *r.Shadow.Sample != 1 {
		t.Errorf("shadow sample defaults to 1")
	}
	b := cfg.Backends["monolith"]
	if b.Timeout.D() != 30*time.Second || b.Breaker.ConsecutiveFailures != 5 || b.Breaker.OpenFor.D() != 5*time.Second || b.Retry.Budget != 0.2 {
		t.Errorf("backend defaults not applied: %+v", b)
	}
	wantHealth := config.Health{Path: "/readyz", Interval: config.Duration(time.Second), Timeout: config.Duration(time.Second),
		HealthyThreshold: 1, UnhealthyThreshold: 2}
	if b.Health != wantHealth {
		t.Errorf("health check defaults: got %+v, want %+v", b.Health, wantHealth)
	}
	fc := cfg.Facade
	if fc.BodyTimeout.D() != 30*time.Second || fc.MaxBodyBytes != 10<<20 || fc.Admin.AllowRemote ||
		strings.Join(fc.InternalPaths, " ") != "/metrics /healthz /readyz /livez /debug" {
		t.Errorf("facade body and exposure defaults not applied: %+v", fc)
	}
	if cfg, err := config.Parse("c.yaml", []byte(valid+"facade: { internal_paths: [] }\n")); err != nil || len(cfg.Facade.InternalPaths) != 0 {
		t.Errorf("internal_paths: [] must expose every path, got %v (%v)", cfg.Facade.InternalPaths, err)
	}
	if cfg.Facade.Listen != "127.0.0.1:8080" || cfg.Facade.Admin.TokenEnv != "FICUS_ADMIN_TOKEN" || cfg.Events.Bus != "embedded" {
		t.Errorf("facade/events defaults not applied: %+v %+v", cfg.Facade, cfg.Events)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in one problem line
	}{
		{"syntax", "backends:\n  a: [\n", []string{"c.yaml:2", "YAML syntax"}},
		{"empty", "", []string{"c.yaml: the file is empty"}},
		{"unknown field", valid + "bogus: 1\n", []string{`c.yaml:11:1: bogus: unknown field "bogus"`}},
		{"unknown nested field", strings.Replace(valid, "timeout: 2s", "timeout: 2s, tmeout: 3s", 1),
			[]string{`c.yaml:4:57: backends.inventory.tmeout: unknown field "tmeout"`}},
		{"bad duration", strings.Replace(valid, "timeout: 2s", "timeout: 2 sec", 1),
			[]string{`c.yaml:4:53: backends.inventory.timeout: invalid duration "2 sec"`}},
		{"negative duration", strings.Replace(valid, "timeout: 2s", "timeout: -2s", 1),
			[]string{`backends.inventory.timeout: negative duration`}},
		{"wrong type", strings.Replace(valid, "timeout: 2s", "retry: { attempts: three }", 1),
			[]string{`c.yaml:4:63: backends.inventory.retry.attempts: expects a whole number, got "three"`}},
		{"bad url", strings.Replace(valid, "http://127.0.0.1:8082", "ftp://x", 1),
			[]string{`c.yaml:4:16: backends.inventory.url: URL "ftp://x" must start with http:// or https://`}},
		{"dangling backend", strings.Replace(valid, "to: inventory", "to: inventroy", 1),
			[]string{`c.yaml:8:15: routes[0].shadow.to: unknown backend "inventroy" (defined: inventory, monolith)`}},
		{"duplicate route", valid + "  - match: { path: /api/inventory, methods: [HEAD, GET] }\n    to: monolith\n",
			[]string{`c.yaml:11:5: routes[2].match: duplicates routes[0]`}},
		{"duplicate route name", valid + "  - name: /\n    match: { path: /api }\n    to: monolith\n",
			[]string{`routes[2].name: route name "/" is also routes[1]'s`}},
		{"bad path", strings.Replace(valid, "/api/inventory", "/api/../x", 1), []string{`routes[0].match.path: path "/api/../x" is not clean`}},
		{"bad method", strings.Replace(valid, "get,", "FETCH,", 1), []string{`routes[0].match.methods[0]: unknown method "FETCH"`}},
		{"bad module", valid + "monolith: { modules: { orders: remote } }\n", []string{`monolith.modules.orders: orders has no extracted service yet`}},
		{"remote without backend", valid + "monolith: { modules: { payments: remote } }\n", []string{`remote needs a backend named "payments"`}},
		{"bad database", valid + "monolith: { database: mysql://x }\n", []string{`monolith.database: want sqlite:PATH or postgres://`}},
		{"bad bus", valid + "events: { bus: http://x }\n", []string{`events.bus: want embedded, nats://host:port or kafka://host:port`}},
		{"bad listen", valid + "facade: { listen: nowhere }\n", []string{`facade.listen: want host:port, got "nowhere"`}},
		{"empty admin listen", valid + "facade: { admin: { listen: \"\" } }\n", []string{`c.yaml:11:20: facade.admin.listen: must not be empty`}},
		{"null admin listen", valid + "facade:\n  admin:\n    listen:\n", []string{`c.yaml:13:5: facade.admin.listen: must not be empty`}},
		{"empty listen", valid + "facade: { listen: '' }\n", []string{`facade.listen: must not be empty`}},
		{"remote admin", valid + "facade: { admin: { listen: 0.0.0.0:9900 } }\n", []string{`facade.admin.listen: "0.0.0.0:9900" can be reached from other hosts`}},
		{"all interfaces admin", valid + "facade: { admin: { listen: ':9900' } }\n", []string{`facade.admin.listen: ":9900" can be reached from other hosts`}},
		{"lan admin", valid + "facade: { admin: { listen: 192.168.1.5:9900 } }\n", []string{`set facade.admin.allow_remote: true`}},
		{"body limits", valid + "facade: { body_timeout: 2h, max_body_bytes: -1 }\n",
			[]string{"facade.body_timeout: must be at most 1h", "facade.max_body_bytes: must be between 1 and 1073741824"}},
		{"internal paths", valid + "facade: { internal_paths: [metrics, /, /a/../b] }\n",
			[]string{`facade.internal_paths[0]: "metrics" must be a clean path`, `facade.internal_paths[1]: "/" must be`, `facade.internal_paths[2]: "/a/../b"`}},
		{"health", strings.Replace(valid, "timeout: 2s", "timeout: 2s, health: { path: readyz, interval: 1ms, timeout: 2m, healthy_threshold: 101, unhealthy_threshold: -1 }", 1),
			[]string{`backends.inventory.health.path: "readyz" must be a path starting with /`, "health.interval: must be between 10ms and 1h",
				"health.timeout: must be at most 1m", "health.healthy_threshold: must be between 1 and 100", "health.unhealthy_threshold: must be between 1 and 100"}},
		{"empty health path", strings.Replace(valid, "timeout: 2s", "timeout: 2s, health: { path: '' }", 1), []string{`backends.inventory.health.path: must not be empty`}},
		{"resilience bounds", strings.Replace(valid, "timeout: 2s", "timeout: 2h, breaker: { open_for: 1h }, bulkhead: { max_concurrent: 1000000 }", 1),
			[]string{"backends.inventory.timeout: must be at most 10m", "backends.inventory.breaker.open_for: must be at most 10m", "bulkhead.max_concurrent: must be at most 100000"}},
		{"canary percent", strings.Replace(valid, "shadow: { to: inventory, ignore: [/updated_at] }", "canary: { to: inventory, percent: 120, sticky: ip }", 1),
			[]string{"routes[0].canary.percent: must be between 0 and 100", `routes[0].canary.sticky: want header:NAME or cookie:NAME, got "ip"`}},
		{"many at once", "backends:\n  a: { url: x, timeout: zz }\nroutes:\n  - match: { path: nope }\n    to: b\nextra: 1\n",
			[]string{"c.yaml:2:25: backends.a.timeout: invalid duration", "c.yaml:2:8: backends.a.url", "c.yaml:4:14: routes[0].match.path", "c.yaml:5:5: routes[0].to: unknown backend \"b\"", "c.yaml:6:1: extra: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("c.yaml", []byte(tt.yaml))
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			got := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if len(cerr.Problems) < len(tt.want) && tt.name == "many at once" {
				t.Errorf("want every problem at once, got %d:\n%s", len(cerr.Problems), got)
			}
		})
	}
}

func TestAdminMayListenRemotelyWhenAllowed(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9900", "'[::]:9900'", "10.0.0.7:9900"} {
		if _, err := config.Parse("c.yaml", []byte(valid+"facade: { admin: { listen: "+addr+", allow_remote: true } }\n")); err != nil {
			t.Errorf("%s with allow_remote: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9900", "localhost:9900", "'[::1]:9900'", "127.0.0.1:0"} {
		if _, err := config.Parse("c.yaml", []byte(valid+"facade: { admin: { listen: "+addr+" } }\n")); err != nil {
			t.Errorf("loopback %s: %v", addr, err)
		}
	}
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Resolve("data/x.db"), filepath.Join(dir, "data/x.db"); got != want {
		t.Errorf("Resolve = %q, want %q", got, want)
	}
}

func TestRedacted(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte(valid+"monolith: { database: 'postgres://u:secret@db/shop' }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Redacted(); strings.Contains(r.Monolith.Database, "secret") {
		t.Errorf("password not redacted: %s", r.Monolith.Database)
	}
	if !strings.Contains(cfg.Monolith.Database, "secret") {
		t.Errorf("Redacted must not change the original")
	}
	cfg, err = config.Parse("c.yaml", []byte(strings.Replace(valid, "http://127.0.0.1:8082", "http://u:hunter2@127.0.0.1:8082", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Redacted(); strings.Contains(r.Backends["inventory"].URL, "hunter2") {
		t.Errorf("backend URL password not redacted: %s", r.Backends["inventory"].URL)
	}
	if !strings.Contains(cfg.Backends["inventory"].URL, "hunter2") {
		t.Errorf("Redacted must not change the original backend")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("routes: [{match: {path: /}, to: a}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("f.yaml", data)
		if err == nil && (len(cfg.Routes) == 0 || len(cfg.Backends) == 0) {
			t.Fatalf("a config without routes or backends was accepted")
		}
	})
}
