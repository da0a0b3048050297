package facade

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ficus-project/ficus/facade/gate"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/problem"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// RouteTable is the answer of GET /api/routes: the live route table.
type RouteTable struct {
	// Generation is the config generation the table was built from.
	Generation uint64 `json:"generation"`
	// Routes are in config order.
	Routes []RouteInfo `json:"routes"`
}

// RouteInfo is one route on the admin API: the route as configured (its JSON fields at the
// top level) and the live state of the backends it names.
type RouteInfo struct {
	config.Route
	// Breakers gives the breaker state of every backend the route names.
	Breakers map[string]string `json:"breakers"`
	// Stage is where the route stands in a promotion: "shadow", "canary", or "" (left out)
	// when it serves from its primary alone.
	Stage string `json:"stage,omitempty"`
	// DiffRate is the share of the shadow's compared samples that really differed over the
	// gates' window; routes with a shadow only.
	DiffRate *float64 `json:"diff_rate,omitempty"`
	// RolledBack says when and why the facade rolled the route's canary back, while it holds.
	RolledBack *Rollback `json:"rolled_back,omitempty"`
}

// RoutePromotion is a route's promotion stage and gates (GET /api/promotion).
type RoutePromotion struct {
	Route     string `json:"route"`
	Stage     string `json:"stage"`
	Primary   string `json:"primary"`
	Candidate string `json:"candidate"`
	// Percent is the canary's configured share (0 in the shadow stage).
	Percent float64 `json:"percent"`
	// Next is where `ficus promote` would take the route: "canary 10%" or "full".
	Next string `json:"next"`
	// OK says every gate holds.
	OK bool `json:"ok"`
	// Window is how far back the gates look.
	Window string        `json:"window"`
	Gates  []gate.Result `json:"gates"`
	// RolledBack, while the facade holds the canary rolled back, says when and why.
	RolledBack *Rollback `json:"rolled_back,omitempty"`
}

// BackendInfo is one backend on the admin API (GET /api/backends).
type BackendInfo struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Breaker is the circuit breaker's state: closed, half-open or open.
	Breaker string `json:"breaker"`
	// Health is what the active health check says: healthy, unhealthy or disabled.
	Health   string `json:"health"`
	InFlight int64  `json:"in_flight"`
	Queued   int64  `json:"queue_depth"`
}

// Routes returns the live route table.
func (f *Facade) Routes() RouteTable {
	t := f.table.Load()
	out := RouteTable{Generation: t.generation, Routes: make([]RouteInfo, 0, len(t.routes))}
	for _, r := range t.routes {
		ri := RouteInfo{Route: r.Config, Breakers: map[string]string{}, Stage: r.Config.Stage()}
		ri.Name = r.Name
		if r.live != nil {
			if r.shadow != nil {
				rate := r.live.compared.Counts().Rate()
				ri.DiffRate = &rate
			}
			ri.RolledBack = r.live.rolledBack.Load()
		}
		for _, tg := range []*target{r.primary, r.fallback, r.shadow, r.canary} {
			if tg != nil {
				ri.Breakers[tg.backend.Name] = tg.backend.BreakerState()
			}
		}
		out.Routes = append(out.Routes, ri)
	}
	return out
}

// ShadowReports returns the shadow report of every route with a shadow, in config order.
func (f *Facade) ShadowReports() []ShadowReport {
	t := f.table.Load()
	out := []ShadowReport{}
	for _, r := range t.routes {
		if r.live != nil && r.live.report != nil {
			out = append(out, r.live.report.snapshot())
		}
	}
	return out
}

// Promotion returns the stage and gates of every route with a shadow or a canary, in config
// order.
func (f *Facade) Promotion() []RoutePromotion {
	t := f.table.Load()
	out := []RoutePromotion{}
	for _, r := range t.routes {
		stage := r.Config.Stage()
		if stage == "" || r.live == nil {
			continue
		}
		lv := r.live
		p := RoutePromotion{Route: r.Name, Stage: stage, Primary: r.primary.backend.Name, Candidate: r.Config.Candidate(),
			Window: lv.gates.Window.String(), RolledBack: lv.rolledBack.Load()}
		if r.Config.Canary != nil {
			p.Percent = r.Config.Canary.Percent
		}
		pct, full, _ := r.Config.NextStep()
		p.Next = fmt.Sprintf("canary %g%%", pct)
		if full {
			p.Next = "full"
		}
		in := gate.Input{Primary: lv.primary.Snapshot(), Candidate: lv.candidate.Snapshot()}
		if lv.report != nil {
			c := lv.compared.Snapshot()
			in.Compared = &c
		}
		p.Gates = gate.Evaluate(lv.gates, in)
		if rb := p.RolledBack; rb != nil {
			p.Gates = append(p.Gates, gate.Result{Gate: "rolled_back", Detail: fmt.Sprintf("the facade rolled the canary back at %s: %s failed: %s; change the route's config to run it again",
				rb.Time.Format(time.RFC3339), rb.Gate, rb.Detail)})
		}
		p.OK = len(gate.Failed(p.Gates)) == 0
		out = append(out, p)
	}
	return out
}

// Backends returns the live backends, by name.
func (f *Facade) Backends() []BackendInfo {
	t := f.table.Load()
	out := make([]BackendInfo, 0, len(t.backends))
	for name, b := range t.backends {
		out = append(out, BackendInfo{Name: name, URL: config.Redact(b.Config.URL), Breaker: b.BreakerState(),
			Health: b.Health(), InFlight: b.bulkhead.InFlight(), Queued: b.bulkhead.Queued()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AdminHandler returns the admin API and the dashboard. /healthz, /readyz and the
// dashboard's page ("/") and files are open; everything else needs "Authorization: Bearer
// TOKEN" with the admin token (Options.AdminToken), and answers 401 otherwise.
func (f *Facade) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if f.draining.Load() {
			problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "draining", "the facade is shutting down"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "generation": f.table.Load().generation})
	})
	mux.Handle("/api/routes", get(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f.Routes()) }))
	mux.Handle("/api/backends", get(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f.Backends()) }))
	mux.Handle("/api/config", get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.Config().Redacted())
	}))
	mux.Handle("/api/reload", get(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f.LastReload()) }))
	mux.Handle("/api/shadow", get(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f.ShadowReports()) }))
	mux.Handle("/api/promotion", get(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f.Promotion()) }))
	mux.Handle("/metrics", get(promhttp.HandlerFor(f.registry, promhttp.HandlerOpts{Registry: f.registry}).ServeHTTP))
	mux.Handle("/api/dashboard", get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.DashboardSnapshot(r.Context()))
	}))
	// The dashboard's page at "/" (and 404 for every path no endpoint serves), its files.
	page, files := dashboardPage()
	mux.Handle("/", page)
	mux.Handle(dashboardPrefix, files)
	return f.requireToken(mux)
}

// requireToken lets through the health checks, the dashboard's page and files, and requests
// bearing the admin token.
func (f *Facade) requireToken(next http.Handler) http.Handler {
	want := []byte(f.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openToAll(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ficus-admin"`)
			problem.Write(w, r, problem.New(http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// get restricts h to GET and HEAD.
func get(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Write(w, r, problem.New(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here"))
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
