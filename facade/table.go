package facade

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ficus-project/ficus/facade/canary"
	"github.com/ficus-project/ficus/facade/route"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/prometheus/client_golang/prometheus"
)

// table is one immutable generation of the facade's routing: the config it was built from,
// its router, routes and backends. A reload builds a new table and swaps the pointer;
// requests keep the table they started with until they finish.
type table struct {
	cfg        *config.Config
	generation uint64
	loaded     time.Time
	router     *route.Router
	routes     []*Route
	backends   map[string]*Backend
	// header names the response header that says which backend answered.
	header string
	// internal are the backends' own endpoints, refused unless a route names them.
	internal []string
	// maxBody and bodyTimeout bound a request body's size and the time it may take to arrive.
	maxBody     int64
	bodyTimeout time.Duration
	// record says which requests are recorded, to recordFile (resolved; "" records none).
	record     config.FacadeRecord
	recordFile string
	// shadow bounds the shadow path; shadowFile is its report file, resolved, or "".
	shadow     config.FacadeShadow
	shadowFile string
	// overrideHeader forces a canary route's backend, for overrideNets or with the admin
	// token.
	overrideHeader string
	overrideNets   []*net.IPNet
}

// Route is one compiled route: its config and the backends it names, resolved.
type Route struct {
	// Name identifies the route in metrics and on the admin API.
	Name string
	// Config is the route as configured.
	Config config.Route

	// path is the route's match path as the router compares it, without a trailing slash.
	path string

	primary  *target
	fallback *target
	// shadow is the candidate a sample of the route's requests is mirrored to, or nil.
	shadow *target
	// canary takes split's share of the route's requests, or nil.
	canary *target
	split  *canary.Split
	// live is what the facade learns about the route while it serves; it outlives reloads
	// that leave the route unchanged.
	live *live
	// sample is the shadow's sampled fraction; shadowAll says it mirrors every method,
	// else shadowMethods lists them.
	sample        float64
	shadowAll     bool
	shadowMethods []string
	// outcomes and dropped are the route's shadow counters, resolved once.
	outcomes map[string]prometheus.Counter
	dropped  map[string]prometheus.Counter
}

// shadows reports whether the route mirrors requests with method.
func (r *Route) shadows(method string) bool {
	return r.shadow != nil && (r.shadowAll || slices.Contains(r.shadowMethods, method))
}

// target is a backend as one route uses it, with that pair's metrics.
type target struct {
	backend *Backend
	m       *routeMetrics
}

// build compiles cfg into a table, reusing old's backends whose config did not change so
// their breakers, bulkheads and retry budgets carry over.
func (f *Facade) build(cfg *config.Config, old *table, now time.Time) (*table, error) {
	t := &table{
		cfg:            cfg,
		loaded:         now,
		backends:       make(map[string]*Backend, len(cfg.Backends)),
		header:         cfg.Facade.BackendHeader,
		internal:       cfg.Facade.InternalPaths,
		maxBody:        cfg.Facade.MaxBodyBytes,
		bodyTimeout:    cfg.Facade.BodyTimeout.D(),
		shadow:         cfg.Facade.Shadow,
		overrideHeader: http.CanonicalHeaderKey(cfg.Facade.Canary.OverrideHeader),
	}
	t.record = cfg.Facade.Record
	if t.record.File != "" && t.record.Sample != nil && *t.record.Sample > 0 {
		t.recordFile = cfg.Resolve(t.record.File)
	}
	if t.shadow.ReportFile != "" {
		t.shadowFile = cfg.Resolve(t.shadow.ReportFile)
	}
	if t.overrideHeader == "" {
		t.overrideHeader = "Ficus-Backend-Override"
	}
	for _, n := range cfg.Facade.Canary.OverrideNetworks {
		_, ipn, err := net.ParseCIDR(n)
		if err != nil {
			return nil, fmt.Errorf("facade.canary.override_networks: %w", err)
		}
		t.overrideNets = append(t.overrideNets, ipn)
	}
	if t.shadow.MaxBodyBytes <= 0 {
		// A config that did not come through config.Load: the documented defaults.
		t.shadow = config.FacadeShadow{Queue: 1024, Concurrency: 16, MaxBodyBytes: 1 << 20,
			Timeout: config.Duration(10 * time.Second), Samples: 10, Endpoints: 64, ReportMaxBytes: 64 << 20}
	}
	if t.maxBody <= 0 {
		t.maxBody = 10 << 20
	}
	if t.bodyTimeout <= 0 {
		t.bodyTimeout = 30 * time.Second
	}
	if t.header == "" {
		t.header = "Ficus-Backend"
	}
	t.header = http.CanonicalHeaderKey(t.header)
	if old != nil {
		t.generation = old.generation + 1
	} else {
		t.generation = 1
	}
	for name, bc := range cfg.Backends {
		if old != nil {
			if ob, ok := old.backends[name]; ok && ob.Config == bc {
				t.backends[name] = ob
				continue
			}
		}
		b, err := newBackend(name, bc, f.transport, f.metrics, f.log)
		if err != nil {
			return nil, err
		}
		t.backends[name] = b
	}
	rules := make([]route.Rule, len(cfg.Routes))
	t.routes = make([]*Route, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		rules[i] = route.Rule{Path: rc.Match.Path, Methods: rc.Match.Methods, Headers: rc.Match.Headers}
		r := &Route{Name: rc.Name, Config: rc, path: rc.Match.Path}
		if r.Name == "" {
			r.Name = rc.Match.Path
		}
		if len(r.path) > 1 {
			r.path = strings.TrimSuffix(r.path, "/")
		}
		clients := f.metrics.forClients(r.Name)
		var err error
		resolve := func(field, name string) *target {
			if name == "" || err != nil {
				return nil
			}
			b, ok := t.backends[name]
			if !ok {
				err = fmt.Errorf("route %s: %s names unknown backend %q", r.Name, field, name)
				return nil
			}
			return &target{backend: b, m: f.metrics.forRoute(r.Name, name, clients)}
		}
		r.primary = resolve("to", rc.To)
		r.fallback = resolve("fallback", rc.Fallback)
		if rc.Shadow != nil {
			r.shadow = resolve("shadow.to", rc.Shadow.To)
			r.sample = 1
			if rc.Shadow.Sample != nil {
				r.sample = *rc.Shadow.Sample
			}
			r.shadowMethods = rc.ShadowedMethods()
			r.shadowAll = len(r.shadowMethods) == 0
			r.outcomes, r.dropped = map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
			for _, o := range []string{outcomeMatch, outcomeDiff, outcomeLag, outcomeError} {
				r.outcomes[o] = f.metrics.shadowSamples.WithLabelValues(r.Name, o)
			}
			for _, d := range []string{dropQueueFull, dropBodyTooLarge, dropResponseTooLarge, dropPrimaryFailed, dropTimeout, dropClosing} {
				r.dropped[d] = f.metrics.shadowDropped.WithLabelValues(r.Name, d)
			}
			unsafe := r.shadowAll || slices.ContainsFunc(r.shadowMethods, func(m string) bool { return !config.SafeMethod(m) })
			if err == nil && unsafe && f.signer == nil {
				err = fmt.Errorf("route %s: shadows unsafe methods to %s, but the facade has no dry-run secret to sign them with (Options.DryRunSecret)", r.Name, rc.Shadow.To)
			}
		}
		if rc.Canary != nil {
			r.canary = resolve("canary.to", rc.Canary.To)
			if err == nil {
				if r.split, err = canary.New(rc.Canary.Percent, rc.Canary.Sticky, r.Name); err != nil {
					err = fmt.Errorf("route %s: %w", r.Name, err)
				}
			}
		}
		r.live = f.liveFor(old, r.Name, rc, &t.shadow)
		if err == nil && r.primary == nil {
			err = fmt.Errorf("route %s: no backend to send to", r.Name)
		}
		if err != nil {
			return nil, err
		}
		t.routes[i] = r
	}
	t.router = route.New(rules)
	return t, nil
}

// internalPath reports whether p is one of the backends' own endpoints that route r does not
// name: p is an internal path, or under one, longer than r's own match path. The default
// route "/" never exposes them; a route for "/metrics" itself does.
func (t *table) internalPath(p string, r *Route) bool {
	for _, ip := range t.internal {
		if len(ip) > len(r.path) && route.HasSegmentPrefix(p, ip) {
			return true
		}
	}
	return false
}

// retired returns old's backends that t no longer uses.
func retired(old, t *table) []*Backend {
	if old == nil {
		return nil
	}
	var out []*Backend
	for name, b := range old.backends {
		if t.backends[name] != b {
			out = append(out, b)
		}
	}
	return out
}

func logRetired(log *slog.Logger, bs []*Backend) {
	for _, b := range bs {
		log.Info("backend changed or removed; a changed one starts with fresh resilience state", "backend", b.Name)
	}
}
