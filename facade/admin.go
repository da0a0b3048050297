package facade

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

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
		ri := RouteInfo{Route: r.Config, Breakers: map[string]string{}}
		ri.Name = r.Name
		for _, tg := range []*target{r.primary, r.fallback, r.shadow, r.canary} {
			if tg != nil {
				ri.Breakers[tg.backend.Name] = tg.backend.BreakerState()
			}
		}
		out.Routes = append(out.Routes, ri)
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

// AdminHandler returns the admin API. /healthz and /readyz are open; everything else needs
// "Authorization: Bearer TOKEN" with the admin token (Options.AdminToken), and answers 401
// otherwise.
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
	mux.Handle("/metrics", get(promhttp.HandlerFor(f.registry, promhttp.HandlerOpts{Registry: f.registry}).ServeHTTP))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.New(http.StatusNotFound, "not_found", "no admin endpoint "+r.URL.Path))
	})
	return f.requireToken(mux)
}

// requireToken lets through the health checks and requests bearing the admin token.
func (f *Facade) requireToken(next http.Handler) http.Handler {
	want := []byte(f.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
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
