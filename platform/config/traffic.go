package config

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
)

// Shadow mirrors a sample of a route's requests to a candidate backend and compares its
// answers with the primary's (docs/facade.md, "Shadow traffic"). The candidate never
// affects the client: its answer is only compared.
type Shadow struct {
	// To names the candidate backend. Required.
	To string `yaml:"to" json:"to"`
	// Sample is the fraction of requests mirrored, 0 to 1. Default 1.
	Sample *float64 `yaml:"sample,omitempty" json:"sample,omitempty"`
	// Methods are the methods mirrored. Default: the route's match.methods, else every
	// method. An unsafe method (anything but GET, HEAD, OPTIONS, TRACE) is mirrored only to a
	// backend that declares dry_run: true; ficus check refuses the config otherwise.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Ignore lists JSON pointer patterns left out of the comparison ("/updated_at",
	// "/items/*/id", "/**/etag"). Default none.
	Ignore []string `yaml:"ignore,omitempty" json:"ignore,omitempty"`
	// Headers are the response headers compared. Default compare.DefaultHeaders
	// (Content-Type, Location, Idempotent-Replayed, Retry-After); [] compares none.
	Headers []string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Equivalent lists value rules under which two differing values count as equal, as in
	// platform/compare ({class: rfc3339}, {at: /note, regexp: '^v1-'}). Default none.
	Equivalent []compare.ValueRule `yaml:"equivalent,omitempty" json:"equivalent,omitempty"`
	// Capture lists where generated ids are, as in platform/compare ({class: uuid}).
	// Default none.
	Capture []compare.ValueRule `yaml:"capture,omitempty" json:"capture,omitempty"`
	// Learn is the fraction of samples also sent to the primary a second time: what differs
	// between the primary's two answers is noise for that endpoint, ignored from then on
	// and shown in the report. An endpoint's first 10 samples always learn when Learn is
	// above 0. Only safe methods are sent twice. 0 to 1; default 0 (no learning).
	Learn float64 `yaml:"learn,omitempty" json:"learn,omitempty"`
	// Recheck is how long after a differing answer the candidate is asked again (safe
	// methods only) before the difference counts: a candidate kept in step by `ficus migrate
	// sync` may lag. A pair that matches on the re-check is counted as lag, apart from real
	// differences. Default 250ms; 0s turns re-checks off; at most 1m.
	Recheck *Duration `yaml:"recheck,omitempty" json:"recheck,omitempty"`
}

// Rules returns the comparison rules the shadow's settings make.
func (s *Shadow) Rules() compare.Rules {
	return compare.Rules{Ignore: s.Ignore, Headers: s.Headers, Equivalent: s.Equivalent, Capture: s.Capture}
}

// Canary sends a weighted share of a route's requests to another backend (docs/facade.md,
// "Canary").
type Canary struct {
	// To names the canary backend. Required.
	To string `yaml:"to" json:"to"`
	// Percent of requests sent to the canary, 0 to 100, in steps of 0.01.
	Percent float64 `yaml:"percent" json:"percent"`
	// Sticky keeps a client on one side: "header:NAME" or "cookie:NAME". The key is hashed,
	// so raising Percent moves only the clients that must move. A request without the key
	// is placed at random. Default: not sticky (every request placed at random).
	Sticky string `yaml:"sticky,omitempty" json:"sticky,omitempty"`
}

// Promote says how `ficus promote` moves a route on (shadow → canary → full), when its gates
// hold, and when the facade rolls a canary back by itself. A route with a shadow or a canary
// gets the defaults when it has no promote block.
type Promote struct {
	// Steps are the canary percents a route goes through after its shadow stage, in
	// increasing order, each above 0 and below 100; after the last one comes full. Default
	// [10, 50].
	Steps []float64 `yaml:"steps,omitempty" json:"steps,omitempty"`
	// Sticky is the canary.sticky a promotion from shadow to canary writes. Default none.
	Sticky string `yaml:"sticky,omitempty" json:"sticky,omitempty"`
	// Gates are what must hold for a promotion.
	Gates Gates `yaml:"gates" json:"gates"`
	// Rollback lets the facade send a canary's share back to the primary by itself when the
	// candidate's error rate or diff rate crosses its gate; it stays rolled back until the
	// route's config changes. Default true.
	Rollback *bool `yaml:"rollback,omitempty" json:"rollback,omitempty"`
}

// RollsBack reports whether the facade may roll the route's canary back by itself.
func (p *Promote) RollsBack() bool { return p == nil || p.Rollback == nil || *p.Rollback }

// Gates are a route's promotion gates, judged over the last Window of its traffic: in the
// shadow stage on the shadowed pairs, in a canary stage on the requests each side served.
type Gates struct {
	// Window is how far back the gates look. Default 5m, between 1s and 24h.
	Window Duration `yaml:"window" json:"window"`
	// MinSamples is the fewest samples (compared pairs in the shadow stage, candidate
	// requests in a canary stage) a gate judges on; with fewer it fails. Default 100, at
	// most 1000000.
	MinSamples int `yaml:"min_samples" json:"min_samples"`
	// MaxDiffRate is the highest share of compared pairs that may differ (lag-explained
	// ones do not count). Default 0.01.
	MaxDiffRate *float64 `yaml:"max_diff_rate,omitempty" json:"max_diff_rate,omitempty"`
	// MaxErrorRate is the highest share of the candidate's answers that may be errors (5xx,
	// or no answer). Default 0.01.
	MaxErrorRate *float64 `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty"`
	// MaxErrorIncrease is how much the candidate's error rate may exceed the primary's on the
	// same route over the same window. Default 0.01.
	MaxErrorIncrease *float64 `yaml:"max_error_increase,omitempty" json:"max_error_increase,omitempty"`
	// MaxP99 is the highest p99 latency the candidate may have. Default 0: no absolute bound.
	MaxP99 Duration `yaml:"max_p99,omitempty" json:"max_p99,omitempty"`
	// MaxSlowdown is how much slower than the primary the candidate may be, as a fraction of
	// the primary's median (0.2 = 20%): the gate fails when a Mann-Whitney U test finds the
	// candidate's latencies larger at significance Alpha and the Hodges-Lehmann estimate of
	// the shift is above this. Default 0.2, at most 10.
	MaxSlowdown *float64 `yaml:"max_slowdown,omitempty" json:"max_slowdown,omitempty"`
	// Alpha is the latency test's significance level. Default 0.05, above 0 and below 0.5.
	Alpha float64 `yaml:"alpha,omitempty" json:"alpha,omitempty"`
}

// FacadeShadow bounds the shadow path the routes' shadows share: its queue, its concurrency
// and what it keeps.
type FacadeShadow struct {
	// Queue is how many samples may wait for a worker; a sample that finds it full is
	// dropped and counted, never the client's request. Default 1024, at most 100000.
	Queue int `yaml:"queue" json:"queue"`
	// Concurrency is how many samples are worked on at once. Default 16, at most 1024.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// MaxBodyBytes is the largest request or response body buffered for a comparison; a
	// sample with a larger one is dropped and counted. Default 1MiB, at most 64MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes" json:"max_body_bytes"`
	// Timeout bounds one sample: the candidate's answer, a re-check's wait excepted. Default
	// 10s, at most 5m.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Samples is how many full differing samples each endpoint keeps (the latest). Default 10,
	// at most 100.
	Samples int `yaml:"samples" json:"samples"`
	// Endpoints is how many endpoints (method + path template) a route reports apart; the
	// rest are reported as one. Default 64, at most 1000.
	Endpoints int `yaml:"endpoints" json:"endpoints"`
	// ReportFile, when set, gets each differing sample appended as one JSON line (relative
	// to the config file). Default none.
	ReportFile string `yaml:"report_file,omitempty" json:"report_file,omitempty"`
	// ReportMaxBytes bounds the report file: beyond it the file is renamed FILE.1
	// (replacing the previous one) and a new one begun. Default 64MiB, at least 1MiB.
	ReportMaxBytes ByteSize `yaml:"report_max_bytes" json:"report_max_bytes"`
	// RedactHeaders are request and response headers whose values reports never show, added
	// to Authorization, Proxy-Authorization, Cookie, Set-Cookie and the dry-run header.
	// Default none.
	RedactHeaders []string `yaml:"redact_headers,omitempty" json:"redact_headers,omitempty"`
}

// FacadeRecord records a sample of live traffic, redacted, as JSON lines that `ficus compare
// -traffic FILE` replays against two backends.
type FacadeRecord struct {
	// File is where requests are appended (relative to the config file). Default none:
	// nothing is recorded.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// Sample is the fraction of requests recorded, 0 to 1. Default 0.01.
	Sample *float64 `yaml:"sample,omitempty" json:"sample,omitempty"`
	// Methods are the methods recorded. Default [GET, HEAD].
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// MaxBodyBytes is the largest request body recorded; a request with a larger one is not
	// recorded. Default 64KiB, at most 1MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes" json:"max_body_bytes"`
	// MaxBytes bounds the file: beyond it the file is renamed FILE.1 (replacing the
	// previous one) and a new one begun. Default 64MiB, at least 1MiB.
	MaxBytes ByteSize `yaml:"max_bytes" json:"max_bytes"`
}

// FacadeCanary is how a tester forces a canary route's backend.
type FacadeCanary struct {
	// OverrideHeader names the request header that forces a backend the route names (its
	// to or its canary.to). It is honoured only with the admin token in Ficus-Admin-Token, or
	// from OverrideNetworks, and never forwarded. Default Ficus-Backend-Override.
	OverrideHeader string `yaml:"override_header" json:"override_header"`
	// OverrideNetworks are the client networks (CIDR, by the connection's address, never
	// X-Forwarded-For) whose override header is honoured without the token. Default none,
	// at most 64.
	OverrideNetworks []string `yaml:"override_networks,omitempty" json:"override_networks,omitempty"`
}

// DryRun is how the facade marks a shadowed write so that the service runs it and rolls it
// back, and how the services tell the facade's mark from a client's: the facade signs the
// header with a secret it shares with them (docs/facade.md, "Safe write shadowing").
type DryRun struct {
	// SecretEnv names the variable holding the signing secret. Default FICUS_DRY_RUN_SECRET.
	SecretEnv string `yaml:"secret_env" json:"secret_env"`
	// SecretFile holds the secret when the variable is empty; the first process that needs
	// it and finds none writes a random one there (mode 0600). Default data/dry-run.secret.
	SecretFile string `yaml:"secret_file" json:"secret_file"`
	// MaxAge is how long a signed header is accepted after the facade signed it. Default
	// 1m, between 1s and 1h.
	MaxAge Duration `yaml:"max_age" json:"max_age"`
}

// Default promotion settings.
var (
	// DefaultSteps are the canary percents of a promotion.
	DefaultSteps = []float64{10, 50}
)

// Default shadow and gate figures.
const (
	DefaultRecheck          = 250 * time.Millisecond
	DefaultMaxDiffRate      = 0.01
	DefaultMaxErrorRate     = 0.01
	DefaultMaxErrorIncrease = 0.01
	DefaultMaxSlowdown      = 0.2
	DefaultAlpha            = 0.05
)

// SafeMethod reports whether m never changes anything on the server (RFC 9110 safe methods).
func SafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// ShadowedMethods returns the methods the route's shadow mirrors: shadow.methods, else the
// route's match.methods, else nil meaning every method.
func (r Route) ShadowedMethods() []string {
	if r.Shadow == nil {
		return nil
	}
	if len(r.Shadow.Methods) > 0 {
		return r.Shadow.Methods
	}
	return r.Match.Methods
}

// Stage names where a route stands in a promotion: "shadow" (a shadow, no canary share),
// "canary" (a canary with a share above 0), or "" (neither: the route serves from its
// primary alone, nothing to promote).
func (r Route) Stage() string {
	switch {
	case r.Canary != nil && r.Canary.Percent > 0:
		return "canary"
	case r.Shadow != nil:
		return "shadow"
	}
	return ""
}

func (c *Config) setTrafficDefaults() {
	s := &c.Facade.Shadow
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&s.Queue, 1024)
	defInt(&s.Concurrency, 16)
	defInt(&s.Samples, 10)
	defInt(&s.Endpoints, 64)
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = 1 << 20
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(10 * time.Second)
	}
	if s.ReportMaxBytes == 0 {
		s.ReportMaxBytes = 64 << 20
	}
	rec := &c.Facade.Record
	if rec.Sample == nil {
		v := 0.01
		rec.Sample = &v
	}
	if rec.Methods == nil {
		rec.Methods = []string{http.MethodGet, http.MethodHead}
	}
	for j, m := range rec.Methods {
		rec.Methods[j] = strings.ToUpper(m)
	}
	if rec.MaxBodyBytes == 0 {
		rec.MaxBodyBytes = 64 << 10
	}
	if rec.MaxBytes == 0 {
		rec.MaxBytes = 64 << 20
	}
	if c.Facade.Canary.OverrideHeader == "" {
		c.Facade.Canary.OverrideHeader = "Ficus-Backend-Override"
	}
	if c.DryRun.SecretEnv == "" {
		c.DryRun.SecretEnv = "FICUS_DRY_RUN_SECRET"
	}
	if c.DryRun.SecretFile == "" {
		c.DryRun.SecretFile = "data/dry-run.secret"
	}
	if c.DryRun.MaxAge == 0 {
		c.DryRun.MaxAge = Duration(time.Minute)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if sh := r.Shadow; sh != nil {
			if sh.Sample == nil {
				one := 1.0
				sh.Sample = &one
			}
			if sh.Recheck == nil {
				d := Duration(DefaultRecheck)
				sh.Recheck = &d
			}
			for j, m := range sh.Methods {
				sh.Methods[j] = strings.ToUpper(m)
			}
		}
		if r.Promote == nil && (r.Shadow != nil || r.Canary != nil) {
			r.Promote = &Promote{}
		}
		if p := r.Promote; p != nil {
			if p.Steps == nil {
				p.Steps = slices.Clone(DefaultSteps)
			}
			if p.Rollback == nil {
				yes := true
				p.Rollback = &yes
			}
			g := &p.Gates
			if g.Window == 0 {
				g.Window = Duration(5 * time.Minute)
			}
			defInt(&g.MinSamples, 100)
			defFloat := func(v **float64, d float64) {
				if *v == nil {
					*v = &d
				}
			}
			defFloat(&g.MaxDiffRate, DefaultMaxDiffRate)
			defFloat(&g.MaxErrorRate, DefaultMaxErrorRate)
			defFloat(&g.MaxErrorIncrease, DefaultMaxErrorIncrease)
			defFloat(&g.MaxSlowdown, DefaultMaxSlowdown)
			if g.Alpha == 0 {
				g.Alpha = DefaultAlpha
			}
		}
	}
}

// validateTraffic checks the facade's shadow and canary settings, the dry-run settings, and
// each route's shadow, canary and promote blocks.
func (p *parser) validateTraffic(c *Config) {
	check := p.checker()
	s := c.Facade.Shadow
	check("facade.shadow.queue", s.Queue >= 1 && s.Queue <= 100_000, "must be between 1 and 100000, got %d", s.Queue)
	check("facade.shadow.concurrency", s.Concurrency >= 1 && s.Concurrency <= 1024, "must be between 1 and 1024, got %d", s.Concurrency)
	check("facade.shadow.max_body_bytes", s.MaxBodyBytes >= 1 && s.MaxBodyBytes <= 64<<20, "must be between 1 and 64MiB, got %s", s.MaxBodyBytes)
	check("facade.shadow.timeout", s.Timeout.D() <= 5*time.Minute, "must be at most 5m, got %s", s.Timeout)
	check("facade.shadow.samples", s.Samples >= 1 && s.Samples <= 100, "must be between 1 and 100, got %d", s.Samples)
	check("facade.shadow.endpoints", s.Endpoints >= 1 && s.Endpoints <= 1000, "must be between 1 and 1000, got %d", s.Endpoints)
	check("facade.shadow.report_max_bytes", s.ReportMaxBytes >= 1<<20, "must be at least 1MiB, got %s", s.ReportMaxBytes)
	check("facade.shadow.redact_headers", len(s.RedactHeaders) <= 64, "at most 64 headers, got %d", len(s.RedactHeaders))
	for i, h := range s.RedactHeaders {
		check(fmt.Sprintf("facade.shadow.redact_headers[%d]", i), validHeaderName(h), "invalid header name %q", h)
	}
	rec := c.Facade.Record
	check("facade.record.sample", *rec.Sample >= 0 && *rec.Sample <= 1, "must be between 0 and 1, got %g", *rec.Sample)
	check("facade.record.max_body_bytes", rec.MaxBodyBytes >= 0 && rec.MaxBodyBytes <= 1<<20, "must be at most 1MiB, got %s", rec.MaxBodyBytes)
	check("facade.record.max_bytes", rec.MaxBytes >= 1<<20, "must be at least 1MiB, got %s", rec.MaxBytes)
	for j, m := range rec.Methods {
		check(fmt.Sprintf("facade.record.methods[%d]", j), slices.Contains(validMethods, m), "unknown method %q", m)
	}
	cn := c.Facade.Canary
	check("facade.canary.override_header", validHeaderName(cn.OverrideHeader), "invalid header name %q", cn.OverrideHeader)
	check("facade.canary.override_networks", len(cn.OverrideNetworks) <= 64, "at most 64 networks, got %d", len(cn.OverrideNetworks))
	for i, n := range cn.OverrideNetworks {
		_, _, err := net.ParseCIDR(n)
		check(fmt.Sprintf("facade.canary.override_networks[%d]", i), err == nil, "%q is not a network in CIDR form (10.0.0.0/8, 127.0.0.1/32)", n)
	}
	check("dry_run.secret_env", c.DryRun.SecretEnv != "", "must not be empty")
	check("dry_run.max_age", c.DryRun.MaxAge.D() >= time.Second && c.DryRun.MaxAge.D() <= time.Hour, "must be between 1s and 1h, got %s", c.DryRun.MaxAge)

	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if sh := r.Shadow; sh != nil {
			p.validateShadow(c, f, r)
		}
		if r.Canary != nil {
			pct := r.Canary.Percent
			check(f+".canary.percent", twoDecimals(pct), "at most two decimals, got %g", pct)
		}
		if pr := r.Promote; pr != nil {
			p.validatePromote(f+".promote", pr)
		}
	}
}

func (p *parser) validateShadow(c *Config, f string, r Route) {
	check := p.checker()
	sh := r.Shadow
	check(f+".shadow.learn", sh.Learn >= 0 && sh.Learn <= 1, "must be between 0 and 1, got %g", sh.Learn)
	if sh.Recheck != nil {
		check(f+".shadow.recheck", sh.Recheck.D() <= time.Minute, "must be at most 1m, got %s", sh.Recheck)
	}
	for j, m := range sh.Methods {
		mf := fmt.Sprintf("%s.shadow.methods[%d]", f, j)
		check(mf, slices.Contains(validMethods, m), "unknown method %q", m)
		if len(r.Match.Methods) > 0 {
			check(mf, slices.Contains(r.Match.Methods, m), "%s is not among the route's match.methods %v: the route never sees it", m, r.Match.Methods)
		}
	}
	if _, err := compare.New(sh.Rules()); err != nil {
		check(f+".shadow", false, "%v", err)
	}
	b, ok := c.Backends[sh.To]
	if !ok || b.DryRun {
		return
	}
	var unsafe []string
	methods := r.ShadowedMethods()
	what := "every method (POST, PUT, PATCH, DELETE among them)"
	if len(methods) > 0 {
		for _, m := range methods {
			if !SafeMethod(m) {
				unsafe = append(unsafe, m)
			}
		}
		what = strings.Join(unsafe, ", ") + " requests"
	}
	check(f+".shadow.to", len(methods) > 0 && len(unsafe) == 0,
		"mirrors %s to backend %q, which does not declare dry_run: true: the copy would really run on it. "+
			"Mirror only reads (shadow: { methods: [GET, HEAD] }), or set backends.%s.dry_run: true if it honours the Ficus-Dry-Run header "+
			"(the extracted services do)", what, sh.To, sh.To)
}

func (p *parser) validatePromote(f string, pr *Promote) {
	check := p.checker()
	check(f+".steps", len(pr.Steps) <= 20, "at most 20 steps, got %d", len(pr.Steps))
	for j, s := range pr.Steps {
		sf := fmt.Sprintf("%s.steps[%d]", f, j)
		check(sf, s > 0 && s < 100, "must be above 0 and below 100, got %g", s)
		check(sf, twoDecimals(s), "at most two decimals, got %g", s)
		if j > 0 {
			check(sf, s > pr.Steps[j-1], "steps must increase: %g follows %g", s, pr.Steps[j-1])
		}
	}
	if pr.Sticky != "" {
		kind, name, _ := strings.Cut(pr.Sticky, ":")
		check(f+".sticky", (kind == "header" || kind == "cookie") && name != "", "want header:NAME or cookie:NAME, got %q", pr.Sticky)
	}
	g := pr.Gates
	check(f+".gates.window", g.Window.D() >= time.Second && g.Window.D() <= 24*time.Hour, "must be between 1s and 24h, got %s", g.Window)
	check(f+".gates.min_samples", g.MinSamples >= 1 && g.MinSamples <= 1_000_000, "must be between 1 and 1000000, got %d", g.MinSamples)
	for _, r := range []struct {
		name string
		v    *float64
		max  float64
	}{{"max_diff_rate", g.MaxDiffRate, 1}, {"max_error_rate", g.MaxErrorRate, 1}, {"max_error_increase", g.MaxErrorIncrease, 1}, {"max_slowdown", g.MaxSlowdown, 10}} {
		if r.v != nil {
			check(f+".gates."+r.name, *r.v >= 0 && *r.v <= r.max, "must be between 0 and %g, got %g", r.max, *r.v)
		}
	}
	check(f+".gates.max_p99", g.MaxP99.D() <= 10*time.Minute, "must be at most 10m, got %s", g.MaxP99)
	check(f+".gates.alpha", g.Alpha > 0 && g.Alpha < 0.5, "must be above 0 and below 0.5, got %g", g.Alpha)
}

// NextStep says where `ficus promote` takes the route: to a canary at percent (full false),
// or to full (the candidate becomes the primary). ok is false when the route has nothing to
// promote (no shadow, no canary).
func (r Route) NextStep() (percent float64, full, ok bool) {
	candidate := r.Stage()
	if candidate == "" {
		return 0, false, false
	}
	steps := DefaultSteps
	if r.Promote != nil && len(r.Promote.Steps) > 0 {
		steps = r.Promote.Steps
	}
	current := 0.0
	if candidate == "canary" {
		current = r.Canary.Percent
	}
	for _, s := range steps {
		if s > current {
			return s, false, true
		}
	}
	return 0, true, true
}

// Candidate names the backend a promotion moves the route to: its canary's, else its
// shadow's; "" with neither.
func (r Route) Candidate() string {
	switch {
	case r.Canary != nil && r.Canary.To != "":
		return r.Canary.To
	case r.Shadow != nil:
		return r.Shadow.To
	}
	return ""
}

// twoDecimals reports whether a percent has at most two decimals (0.29 does, though 0.29×100
// is not exactly 29 in floating point).
func twoDecimals(v float64) bool { return math.Abs(v*100-math.Round(v*100)) < 1e-6 }
