package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

var validMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// validate reports every semantic problem: dangling names, bad URLs, out-of-range numbers,
// duplicate routes.
func (p *parser) validate(c *Config) {
	check := p.checker()
	p.validateFacade(c.Facade)

	if len(c.Backends) == 0 {
		check("backends", false, "at least one backend is required")
	}
	for _, name := range sortedKeys(c.Backends) {
		b := c.Backends[name]
		f := "backends." + name
		check(f+".url", b.URL != "", "a url is required")
		if b.URL != "" {
			u, err := url.Parse(b.URL)
			switch {
			case err != nil:
				check(f+".url", false, "invalid URL %q: %v", b.URL, err)
			case u.Scheme != "http" && u.Scheme != "https":
				check(f+".url", false, "URL %q must start with http:// or https://", b.URL)
			case u.Host == "":
				check(f+".url", false, "URL %q has no host", b.URL)
			case u.RawQuery != "" || u.Fragment != "":
				check(f+".url", false, "URL %q must not have a query or fragment", b.URL)
			}
		}
		check(f+".retry.attempts", b.Retry.Attempts >= 1 && b.Retry.Attempts <= 10, "must be between 1 and 10, got %d", b.Retry.Attempts)
		check(f+".retry.budget", b.Retry.Budget > 0 && b.Retry.Budget <= 1, "must be above 0 and at most 1, got %g", b.Retry.Budget)
		check(f+".retry.max_backoff", b.Retry.MaxBackoff >= b.Retry.Backoff, "must not be less than backoff (%s)", b.Retry.Backoff)
		check(f+".bulkhead.max_concurrent", b.Bulkhead.MaxConcurrent >= 0, "must not be negative")
		check(f+".bulkhead.max_queue", b.Bulkhead.MaxQueue >= 0, "must not be negative")
		check(f+".bulkhead.max_queue", b.Bulkhead.MaxQueue == 0 || b.Bulkhead.MaxConcurrent > 0, "a queue needs max_concurrent to be set")
		p.validateResilience(f, b)
	}

	backend := func(field, name string) {
		if name == "" {
			check(field, false, "a backend name is required")
			return
		}
		_, ok := c.Backends[name]
		check(field, ok, "unknown backend %q (defined: %s)", name, strings.Join(sortedKeys(c.Backends), ", "))
	}
	if len(c.Routes) == 0 {
		check("routes", false, "at least one route is required")
	}
	seen := map[string]int{}
	names := map[string]int{}
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if prev, dup := names[r.Name]; dup {
			check(f+".name", false, "route name %q is also routes[%d]'s; names must be unique", r.Name, prev)
		} else {
			names[r.Name] = i
		}
		mp := r.Match.Path
		switch {
		case mp == "":
			check(f+".match.path", false, "a path is required")
		case !strings.HasPrefix(mp, "/"):
			check(f+".match.path", false, "path %q must start with /", mp)
		case path.Clean(mp) != strings.TrimSuffix(mp, "/") && mp != "/":
			check(f+".match.path", false, "path %q is not clean (want %q)", mp, path.Clean(mp))
		}
		for j, m := range r.Match.Methods {
			check(fmt.Sprintf("%s.match.methods[%d]", f, j), slices.Contains(validMethods, m), "unknown method %q", m)
		}
		for h := range r.Match.Headers {
			check(f+".match.headers."+h, validHeaderName(h), "invalid header name %q", h)
		}
		backend(f+".to", r.To)
		if r.Fallback != "" {
			backend(f+".fallback", r.Fallback)
			check(f+".fallback", r.Fallback != r.To, "fallback must differ from to")
		}
		if s := r.Shadow; s != nil {
			backend(f+".shadow.to", s.To)
			check(f+".shadow.to", s.To != r.To, "the shadow must differ from to")
			check(f+".shadow.sample", s.Sample != nil && *s.Sample >= 0 && *s.Sample <= 1, "must be between 0 and 1")
			for j, ig := range s.Ignore {
				check(fmt.Sprintf("%s.shadow.ignore[%d]", f, j), strings.HasPrefix(ig, "/"), "%q is not a JSON pointer (it starts with /)", ig)
			}
		}
		if cn := r.Canary; cn != nil {
			backend(f+".canary.to", cn.To)
			check(f+".canary.to", cn.To != r.To, "the canary must differ from to")
			check(f+".canary.percent", cn.Percent >= 0 && cn.Percent <= 100, "must be between 0 and 100, got %g", cn.Percent)
			if cn.Sticky != "" {
				kind, name, _ := strings.Cut(cn.Sticky, ":")
				check(f+".canary.sticky", (kind == "header" || kind == "cookie") && name != "", "want header:NAME or cookie:NAME, got %q", cn.Sticky)
			}
		}
		key := routeKey(r.Match)
		if prev, dup := seen[key]; dup {
			check(f+".match", false, "duplicates routes[%d] (same path, methods and headers)", prev)
		} else {
			seen[key] = i
		}
	}

	p.validateListen("monolith.listen", c.Monolith.Listen)
	p.validateDatabase("monolith.database", c.Monolith.Database)
	for _, m := range sortedKeys(c.Monolith.Modules) {
		mode := c.Monolith.Modules[m]
		f := "monolith.modules." + m
		if !slices.Contains(Capabilities, m) {
			check(f, false, "unknown module %q (known: %s)", m, strings.Join(Capabilities, ", "))
			continue
		}
		check(f, mode == ModuleLocal || mode == ModuleRemote, "want local or remote, got %q", mode)
		if mode == ModuleRemote {
			check(f, slices.Contains(Extractable, m), "%s has no extracted service yet (extractable: %s)", m, strings.Join(Extractable, ", "))
			_, ok := c.Backends[m]
			check(f, ok, "remote needs a backend named %q: the monolith reaches the service through it", m)
		}
	}
	p.validateSaga(c.Monolith.Saga)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		f := "services." + name
		if !slices.Contains(Extractable, name) {
			check(f, false, "unknown service %q (known: %s)", name, strings.Join(Extractable, ", "))
			continue
		}
		if s.Listen == "" {
			check(f+".listen", false, "a listen address is required")
		} else {
			p.validateListen(f+".listen", s.Listen)
		}
		p.validateDatabase(f+".database", s.Database)
	}

	p.validateServices(c)

	p.validateEvents(c.Events)
	p.validateRetention(c)
	p.validateTraffic(c)
}

// validateSaga checks the bounds of the order saga's settings: every number has one.
func (p *parser) validateSaga(s Saga) {
	check := p.checker()
	const f = "monolith.saga."
	check(f+"reply_within", s.ReplyWithin.D() <= 30*time.Second, "must be at most 30s, got %s", s.ReplyWithin)
	check(f+"timeout", s.Timeout.D() >= time.Second && s.Timeout.D() <= 24*time.Hour, "must be between 1s and 24h, got %s", s.Timeout)
	check(f+"backoff", s.Backoff.D() <= time.Minute, "must be at most 1m, got %s", s.Backoff)
	check(f+"max_backoff", s.MaxBackoff >= s.Backoff && s.MaxBackoff.D() <= 10*time.Minute,
		"must be between backoff (%s) and 10m, got %s", s.Backoff, s.MaxBackoff)
	check(f+"compensation_attempts", s.CompensationAttempts >= 1 && s.CompensationAttempts <= 10_000,
		"must be between 1 and 10000, got %d", s.CompensationAttempts)
	check(f+"concurrency", s.Concurrency >= 1 && s.Concurrency <= 10_000, "must be between 1 and 10000, got %d", s.Concurrency)
	check(f+"lease", s.Lease.D() >= time.Second && s.Lease.D() <= 10*time.Minute, "must be between 1s and 10m, got %s", s.Lease)
	check(f+"details_timeout", s.DetailsTimeout.D() <= 30*time.Second, "must be at most 30s, got %s", s.DetailsTimeout)
}

// validateFacade checks the facade's own settings.
func (p *parser) validateFacade(fc Facade) {
	check := p.checker()
	for _, field := range []string{"facade.listen", "facade.admin.listen"} {
		// An empty address would quietly bind the default; say so rather than guess.
		check(field, !p.empty[field], "must not be empty; leave the key out for the default, or write an address such as 127.0.0.1:9900")
	}
	p.validateListen("facade.listen", fc.Listen)
	p.validateListen("facade.admin.listen", fc.Admin.Listen)
	if host, _, err := net.SplitHostPort(fc.Admin.Listen); err == nil && !fc.Admin.AllowRemote && !p.empty["facade.admin.listen"] {
		check("facade.admin.listen", isLoopback(host),
			"%q can be reached from other hosts, and the admin API shows the config and the route table; "+
				"listen on 127.0.0.1 (or ::1), or set facade.admin.allow_remote: true", fc.Admin.Listen)
	}
	check("facade.backend_header", validHeaderName(fc.BackendHeader), "invalid header name %q", fc.BackendHeader)
	check("facade.body_timeout", fc.BodyTimeout.D() <= time.Hour, "must be at most 1h, got %s", fc.BodyTimeout)
	check("facade.max_body_bytes", fc.MaxBodyBytes > 0 && fc.MaxBodyBytes <= 1<<30,
		"must be between 1 and 1073741824 (1 GiB), got %d", fc.MaxBodyBytes)
	check("facade.internal_paths", len(fc.InternalPaths) <= 64, "at most 64 paths, got %d", len(fc.InternalPaths))
	for i, ip := range fc.InternalPaths {
		f := fmt.Sprintf("facade.internal_paths[%d]", i)
		check(f, strings.HasPrefix(ip, "/") && ip != "/" && path.Clean(ip) == ip,
			"%q must be a clean path below / (such as /metrics)", ip)
	}
}

// validateResilience checks the bounds of a backend's timeout, breaker, bulkhead and health
// check: every number has one.
func (p *parser) validateResilience(f string, b Backend) {
	check := p.checker()
	check(f+".timeout", b.Timeout.D() <= 10*time.Minute, "must be at most 10m, got %s", b.Timeout)
	check(f+".retry.max_backoff", b.Retry.MaxBackoff.D() <= time.Minute, "must be at most 1m, got %s", b.Retry.MaxBackoff)
	check(f+".breaker.consecutive_failures", b.Breaker.ConsecutiveFailures <= 1_000_000, "must be at most 1000000, got %d", b.Breaker.ConsecutiveFailures)
	check(f+".breaker.open_for", b.Breaker.OpenFor.D() <= 10*time.Minute, "must be at most 10m, got %s", b.Breaker.OpenFor)
	check(f+".breaker.half_open_requests", b.Breaker.HalfOpenRequests <= 1000, "must be at most 1000, got %d", b.Breaker.HalfOpenRequests)
	check(f+".bulkhead.max_concurrent", b.Bulkhead.MaxConcurrent <= 100_000, "must be at most 100000, got %d", b.Bulkhead.MaxConcurrent)
	check(f+".bulkhead.max_queue", b.Bulkhead.MaxQueue <= 100_000, "must be at most 100000, got %d", b.Bulkhead.MaxQueue)
	check(f+".bulkhead.queue_timeout", b.Bulkhead.QueueTimeout.D() <= time.Minute, "must be at most 1m, got %s", b.Bulkhead.QueueTimeout)
	h := b.Health
	check(f+".health.path", !p.empty[f+".health.path"], "must not be empty; leave the key out for the default /readyz, or set disabled: true")
	if !p.empty[f+".health.path"] {
		u, err := url.Parse(h.Path)
		check(f+".health.path", err == nil && strings.HasPrefix(h.Path, "/") && u.Fragment == "",
			"%q must be a path starting with / (a query is allowed)", h.Path)
	}
	check(f+".health.interval", h.Interval.D() >= 10*time.Millisecond && h.Interval.D() <= time.Hour,
		"must be between 10ms and 1h, got %s", h.Interval)
	check(f+".health.timeout", h.Timeout.D() <= time.Minute, "must be at most 1m, got %s", h.Timeout)
	check(f+".health.healthy_threshold", h.HealthyThreshold >= 1 && h.HealthyThreshold <= 100,
		"must be between 1 and 100, got %d", h.HealthyThreshold)
	check(f+".health.unhealthy_threshold", h.UnhealthyThreshold >= 1 && h.UnhealthyThreshold <= 100,
		"must be between 1 and 100, got %d", h.UnhealthyThreshold)
}

// checker returns a function that records a problem at field unless ok, or unless the
// field's value was already reported as undecodable.
func (p *parser) checker() func(field string, ok bool, format string, args ...any) {
	return func(field string, ok bool, format string, args ...any) {
		if !ok && !p.broken[field] {
			p.add(field, fmt.Sprintf(format, args...))
		}
	}
}

// isLoopback reports whether a listen host only accepts connections from this machine. An
// empty host listens on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (p *parser) validateListen(field, addr string) {
	if p.broken[field] {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(field, fmt.Sprintf("want host:port, got %q", addr))
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		p.add(field, fmt.Sprintf("invalid port %q", port))
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		p.add(field, fmt.Sprintf("want an IP address or localhost, got %q", host))
	}
}

func (p *parser) validateDatabase(field, dsn string) {
	if p.broken[field] {
		return
	}
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		if strings.TrimPrefix(dsn, "sqlite:") == "" {
			p.add(field, "sqlite: needs a file path, as in sqlite:data/monolith.db")
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if msg := postgresURLProblem(dsn); msg != "" {
			p.add(field, msg)
		}
	default:
		p.add(field, fmt.Sprintf("want sqlite:PATH or postgres://USER:PASS@HOST:PORT/DB, got %q", Redact(dsn)))
	}
}

// postgresSSLModes are the sslmode values PostgreSQL clients know.
var postgresSSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// postgresURLProblem says what is wrong with a postgres:// URL, or "" if nothing is. Its
// messages never quote the password.
func postgresURLProblem(dsn string) string {
	const want = "; want postgres://USER:PASS@HOST:PORT/DB?sslmode=disable"
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error quotes the whole URL, password and all: keep only the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Sprintf("invalid postgres URL: %v%s", err, want)
	}
	shown := Redact(dsn)
	q := u.Query()
	switch {
	case u.Fragment != "":
		return fmt.Sprintf("postgres URL %q must not have a #fragment", shown)
	case u.Host == "" && q.Get("host") == "":
		return fmt.Sprintf("postgres URL %q names no host%s", shown, want)
	}
	// Several hosts (a primary and its standbys) are separated by commas.
	for _, hp := range strings.Split(u.Host, ",") {
		if hp == "" && u.Host == "" {
			break
		}
		host, port := hp, ""
		if h, p, err := net.SplitHostPort(hp); err == nil {
			host, port = h, p
		} else if strings.Count(hp, ":") == 1 {
			return fmt.Sprintf("postgres URL %q: invalid host:port %q", shown, hp)
		}
		if host == "" {
			return fmt.Sprintf("postgres URL %q: empty host in %q", shown, hp)
		}
		if port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Sprintf("postgres URL %q: invalid port %q (want 1 to 65535)", shown, port)
			}
		}
	}
	db := strings.TrimPrefix(u.Path, "/")
	switch {
	case db == "":
		return fmt.Sprintf("postgres URL %q names no database%s", shown, want)
	case strings.Contains(db, "/"):
		return fmt.Sprintf("postgres URL %q: database name %q contains a slash", shown, db)
	}
	if m := q.Get("sslmode"); m != "" && !slices.Contains(postgresSSLModes, m) {
		return fmt.Sprintf("postgres URL %q: unknown sslmode %q (want one of %s)", shown, m, strings.Join(postgresSSLModes, ", "))
	}
	if t := q.Get("connect_timeout"); t != "" {
		if n, err := strconv.Atoi(t); err != nil || n < 0 {
			return fmt.Sprintf("postgres URL %q: connect_timeout %q is not a number of seconds", shown, t)
		}
	}
	return ""
}

// routeKey identifies a route's match so duplicates can be found.
func routeKey(m Match) string {
	methods := slices.Clone(m.Methods)
	slices.Sort(methods)
	headers := make([]string, 0, len(m.Headers))
	for k, v := range m.Headers {
		headers = append(headers, http.CanonicalHeaderKey(k)+"="+v)
	}
	slices.Sort(headers)
	return strings.TrimSuffix(m.Path, "/") + "|" + strings.Join(methods, ",") + "|" + strings.Join(headers, ",")
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r > 127 || !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// Redact masks the password of a URL-shaped secret (postgres://user:pass@host → user:xxxxx).
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	return u.String()
}

// Redacted returns a copy of c with secrets masked, fit to show on the admin API.
func (c *Config) Redacted() *Config {
	out := *c
	out.Monolith.Database = Redact(c.Monolith.Database)
	out.Services = make(map[string]Service, len(c.Services))
	for k, s := range c.Services {
		s.Database = Redact(s.Database)
		out.Services[k] = s
	}
	out.Events.Bus = Redact(c.Events.Bus)
	out.Backends = make(map[string]Backend, len(c.Backends))
	for k, b := range c.Backends {
		b.URL = Redact(b.URL)
		out.Backends[k] = b
	}
	return &out
}
