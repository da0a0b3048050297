package config

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// CapabilityPaths are the path prefixes of the capabilities that exist as extracted
// services: the requests a route may send to a service instead of the monolith.
var CapabilityPaths = map[string]string{
	"inventory": "/api/inventory",
	"payments":  "/api/payments",
}

// unsafeMethods are the methods that change a capability's data.
var unsafeMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// whoWrites says, per capability, what in the monolith still writes that capability's data
// while its module is local, for the message that refuses routing its writes to the service.
var whoWrites = map[string]string{
	"inventory": "the monolith's orders module still reserves and sells stock in the monolith's own database",
	"payments":  "the monolith's orders module still charges and refunds in the monolith's own database",
}

// validateServices checks what concerns the extracted services as a whole: each has a
// database of its own, and no route sends a capability's writes to its service while the
// monolith's module of that capability is local (the data would split in two).
func (p *parser) validateServices(c *Config) {
	check := p.checker()
	owners := map[string]string{databaseKey(c, c.Monolith.Database): "monolith.database"}
	for _, name := range sortedKeys(c.Services) {
		f := "services." + name + ".database"
		if p.broken[f] || !slices.Contains(Extractable, name) {
			continue
		}
		key := databaseKey(c, c.Services[name].Database)
		if other, taken := owners[key]; taken {
			check(f, false, "is also %s: a service owns a database of its own (for example sqlite:data/%s.db)", other, name)
			continue
		}
		owners[key] = f
	}
	for _, capability := range sortedKeys(c.Services) {
		if _, ok := CapabilityPaths[capability]; !ok || c.Monolith.Modules[capability] != ModuleLocal {
			continue
		}
		p.refuseWritesToService(c, capability)
	}
}

// databaseKey identifies the database a DSN names: a SQLite file by its resolved path, any
// other by its text.
func databaseKey(c *Config, dsn string) string {
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		return "sqlite:" + filepath.Clean(c.Resolve(path))
	}
	return dsn
}

// refuseWritesToService reports each route that would receive a write (an unsafe method)
// under the capability's path and send it to the capability's service: as its primary
// backend, or as a canary with a share of its requests. It follows the facade's own choice
// of route (longest path, then header and method conditions, then file order), so a route
// for reads only, or a broader route (such as /) that a route for the capability's writes
// shadows, is let through.
func (p *parser) refuseWritesToService(c *Config, capability string) {
	prefix := CapabilityPaths[capability]
	svc := serviceBackends(c, capability)
	if len(svc) == 0 {
		return
	}
	order := routeOrder(c.Routes)
	// The paths that can pick different routes: the capability's own, every route path under
	// it, and below each a child no route names.
	probes := []string{prefix}
	for _, r := range c.Routes {
		rp := normalizePath(r.Match.Path)
		if segmentPrefix(rp, prefix) && rp != prefix {
			probes = append(probes, rp)
		}
	}
	for _, pr := range slices.Clone(probes) {
		probes = append(probes, pr+"/\x00")
	}
	for rank, i := range order {
		r := c.Routes[i]
		var field, backend string
		switch {
		case slices.Contains(svc, r.To):
			field, backend = fmt.Sprintf("routes[%d].to", i), r.To
		case r.Canary != nil && r.Canary.Percent > 0 && slices.Contains(svc, r.Canary.To):
			field, backend = fmt.Sprintf("routes[%d].canary.to", i), r.Canary.To
		default:
			continue
		}
		var methods []string
		for _, m := range unsafeMethods {
			if len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, m) {
				continue
			}
			for _, path := range probes {
				if routeMatches(r, m, path) && !shadowed(c.Routes, order[:rank], r, m, path) {
					methods = append(methods, m)
					break
				}
			}
		}
		if len(methods) == 0 {
			continue
		}
		p.checker()(field, false,
			"sends %s requests under %s to backend %q, the %s service, while monolith.modules.%s is local: %s, "+
				"so writes the service took would split the data in two. Route only reads there "+
				"(match: { path: %s, methods: [GET, HEAD] }) and leave the writes on the monolith, until monolith.modules.%s is remote",
			strings.Join(methods, ", "), prefix, backend, capability, capability, whoWrites[capability], prefix, capability)
	}
}

// serviceBackends returns the backends that reach the capability's service: the one named
// after it (as monolith.modules remote requires), and any whose URL is the service's listen
// address.
func serviceBackends(c *Config, capability string) []string {
	listen := c.Services[capability].Listen
	var out []string
	for _, name := range sortedKeys(c.Backends) {
		u, err := url.Parse(c.Backends[name].URL)
		if name == capability || (err == nil && listen != "" && u.Host == listen) {
			out = append(out, name)
		}
	}
	return out
}

// routeOrder returns the routes' indexes in the order the facade tries them (see
// facade/route): longest path first; for one path, more header conditions first, then a
// method condition before none; then the order of the file.
func routeOrder(routes []Route) []int {
	order := make([]int, len(routes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		x, y := routes[order[a]].Match, routes[order[b]].Match
		px, py := normalizePath(x.Path), normalizePath(y.Path)
		if len(px) != len(py) {
			return len(px) > len(py)
		}
		if len(x.Headers) != len(y.Headers) {
			return len(x.Headers) > len(y.Headers)
		}
		return len(x.Methods) > 0 && len(y.Methods) == 0
	})
	return order
}

// routeMatches reports whether r takes a request with method for path, headers aside.
func routeMatches(r Route, method, path string) bool {
	return segmentPrefix(path, normalizePath(r.Match.Path)) &&
		(len(r.Match.Methods) == 0 || slices.Contains(r.Match.Methods, method))
}

// shadowed reports whether a route tried before r (the indexes in before) takes every
// request with method for path that r would take: it matches them, and its header
// conditions are among r's, so every request carrying r's headers carries its too.
func shadowed(routes []Route, before []int, r Route, method, path string) bool {
	for _, i := range before {
		q := routes[i]
		if !routeMatches(q, method, path) {
			continue
		}
		subset := true
		for k, v := range q.Match.Headers {
			if !hasHeader(r.Match.Headers, k, v) {
				subset = false
				break
			}
		}
		if subset {
			return true
		}
	}
	return false
}

func hasHeader(h map[string]string, key, value string) bool {
	for k, v := range h {
		if http.CanonicalHeaderKey(k) == http.CanonicalHeaderKey(key) && v == value {
			return true
		}
	}
	return false
}

// normalizePath is a route path as the facade matches it: a trailing slash dropped.
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// segmentPrefix reports whether prefix is p or a run of whole leading segments of p.
func segmentPrefix(p, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, prefix) && (len(p) == len(prefix) || p[len(prefix)] == '/')
}
