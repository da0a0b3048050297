package facade

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// errKind is an error the facade answers for a backend, by its problem code.
type errKind int

const (
	errUnreachable errKind = iota
	errCircuitOpen
	errBulkheadFull
	errTimeout
	errUnhealthy
	numErrKinds
)

// codes are the problem codes of the errKinds, also their metric label.
var codes = [numErrKinds]string{"backend_unreachable", "circuit_open", "bulkhead_full", "backend_timeout", "backend_unhealthy"}

// clientReason is why a request failed through its client's fault; such failures never
// count against a backend.
type clientReason int

const (
	clientClosed  clientReason = iota // the client went away, or cut its body short
	bodyMalformed                     // the body could not be decoded (bad chunked encoding)
	bodyTimeout                       // the body did not arrive within facade.body_timeout
	bodyTooLarge                      // the body is larger than facade.max_body_bytes
	numClientReasons
)

// reasons are the clientReasons' metric labels, also the problem codes of the answers.
var reasons = [numClientReasons]string{"client_closed", "body_malformed", "body_timeout", "body_too_large"}

// metrics are the facade's Prometheus metrics, registered on a registry the facade was
// given or made: never the global default one.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	errors       *prometheus.CounterVec
	clientErrors *prometheus.CounterVec
	fallbacks    *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	noRoute      prometheus.Counter
	badPath      prometheus.Counter
	internal     prometheus.Counter
	retries      *prometheus.CounterVec
	exhausted    *prometheus.CounterVec
	bulkheadFull *prometheus.CounterVec
	transitions  *prometheus.CounterVec
	checks       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	reloadOK     prometheus.Counter
	reloadFailed prometheus.Counter
	lastReload   prometheus.Gauge
	generation   prometheus.Gauge
	backends     *backendCollector

	shadowSamples *prometheus.CounterVec
	shadowDropped *prometheus.CounterVec
	rollbacks     *prometheus.CounterVec
	recorded      *prometheus.CounterVec
	traffic       *trafficCollector

	// history is each backend's recent traffic, for the dashboard (not Prometheus).
	history *history
}

func newMetrics(reg *prometheus.Registry, f *Facade) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_facade_requests_total",
			Help: "Requests proxied, by route, the backend that answered, and status class (2xx…; facade errors included).",
		}, []string{"route", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ficus_facade_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response body, by route and backend.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_facade_errors_total",
			Help: "Errors the facade answered itself for a backend that failed or refused, by route, backend and problem code.",
		}, []string{"route", "backend", "code"}),
		clientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_facade_client_errors_total",
			Help: "Requests that failed through the client's fault, by route and reason (client_closed, body_malformed, body_timeout, body_too_large); never counted against a backend.",
		}, []string{"route", "reason"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_facade_fallbacks_total",
			Help: "Requests sent to a route's fallback backend because the primary was unavailable.",
		}, []string{"route", "backend"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_facade_rejected_total",
			Help: "Requests refused before reaching a backend, by reason (no_route, ambiguous_path, internal_path, bad_framing: refused by the request-smuggling guard).",
		}, []string{"reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_backend_retries_total",
			Help: "Retries sent to a backend.",
		}, []string{"backend"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_backend_retry_budget_exhausted_total",
			Help: "Retries not sent because the backend's retry budget was spent.",
		}, []string{"backend"}),
		bulkheadFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_backend_bulkhead_rejections_total",
			Help: "Requests refused by a backend's bulkhead.",
		}, []string{"backend"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_backend_breaker_transitions_total",
			Help: "Circuit breaker state changes, by backend and new state.",
		}, []string{"backend", "state"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_backend_health_checks_total",
			Help: "Active health check probes, by backend and result (success, failure).",
		}, []string{"backend", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_config_reloads_total",
			Help: "Config loads, the first included, by result (success, failure).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ficus_config_last_reload_success",
			Help: "1 if the last config reload succeeded, 0 if it was rejected.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ficus_config_generation",
			Help: "Generation of the config serving now; each successful reload adds one.",
		}),
		history: newHistory(),
	}
	m.noRoute = m.rejected.WithLabelValues("no_route")
	m.badPath = m.rejected.WithLabelValues("ambiguous_path")
	m.internal = m.rejected.WithLabelValues("internal_path")
	m.reloadOK = m.reloads.WithLabelValues("success")
	m.reloadFailed = m.reloads.WithLabelValues("failure")
	m.backends = &backendCollector{f: f}
	m.shadowSamples = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ficus_shadow_samples_total",
		Help: "Shadowed requests compared or failed on the candidate, by route and result (match, difference, lag, error).",
	}, []string{"route", "result"})
	m.shadowDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ficus_shadow_dropped_total",
		Help: "Shadow samples never compared, by route and reason (queue_full, body_too_large, response_too_large, primary_failed, timeout, closing, client_error).",
	}, []string{"route", "reason"})
	m.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ficus_canary_rollbacks_total",
		Help: "Canaries the facade rolled back by itself because a gate failed, by route.",
	}, []string{"route"})
	m.recorded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ficus_traffic_recorded_total",
		Help: "Requests sampled for facade.record, by result (recorded, dropped: the writer was behind, the body too large, or the file failed).",
	}, []string{"result"})
	m.traffic = &trafficCollector{f: f}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// collectors lists every collector of the facade's metrics.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.errors, m.clientErrors, m.fallbacks, m.rejected, m.retries,
		m.exhausted, m.bulkheadFull, m.transitions, m.checks, m.reloads, m.lastReload, m.generation, m.backends,
		m.shadowSamples, m.shadowDropped, m.rollbacks, m.recorded, m.traffic}
}

// routeMetrics are the metric children of one (route, backend) pair, resolved once when
// the route table is built so serving a request looks nothing up.
type routeMetrics struct {
	codes     [6]prometheus.Counter // by status/100; 0 holds anything outside 100-599
	duration  prometheus.Observer
	errors    [numErrKinds]prometheus.Counter
	clients   *[numClientReasons]prometheus.Counter // the route's, shared by its backends
	fallbacks prometheus.Counter
	// traffic is the backend's history, which the dashboard charts.
	traffic *series
}

// forClients resolves a route's client error counters.
func (m *metrics) forClients(route string) *[numClientReasons]prometheus.Counter {
	var c [numClientReasons]prometheus.Counter
	for r := range numClientReasons {
		c[r] = m.clientErrors.WithLabelValues(route, reasons[r])
	}
	return &c
}

func (m *metrics) forRoute(route, backend string, clients *[numClientReasons]prometheus.Counter) *routeMetrics {
	rm := &routeMetrics{
		duration:  m.duration.WithLabelValues(route, backend),
		fallbacks: m.fallbacks.WithLabelValues(route, backend),
		clients:   clients,
		traffic:   m.history.forBackend(backend),
	}
	rm.codes[0] = m.requests.WithLabelValues(route, backend, "other")
	for i := 1; i <= 5; i++ {
		rm.codes[i] = m.requests.WithLabelValues(route, backend, strconv.Itoa(i)+"xx")
	}
	for k := range numErrKinds {
		rm.errors[k] = m.errors.WithLabelValues(route, backend, codes[k])
	}
	return rm
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	rm.codes[class].Inc()
	rm.duration.Observe(seconds)
	rm.traffic.observe(status, time.Duration(seconds*float64(time.Second)))
}

// forget drops the series of routes and backends the new table no longer has, so the
// metrics describe the config that serves.
func (m *metrics) forget(old, cur *table) {
	if old == nil {
		return
	}
	routes := map[string]bool{}
	for _, r := range cur.routes {
		routes[r.Name] = true
	}
	for _, r := range old.routes {
		if !routes[r.Name] {
			l := prometheus.Labels{"route": r.Name}
			m.requests.DeletePartialMatch(l)
			m.duration.DeletePartialMatch(l)
			m.errors.DeletePartialMatch(l)
			m.clientErrors.DeletePartialMatch(l)
			m.fallbacks.DeletePartialMatch(l)
			m.shadowSamples.DeletePartialMatch(l)
			m.shadowDropped.DeletePartialMatch(l)
			m.rollbacks.DeletePartialMatch(l)
		}
	}
	for name := range old.backends {
		if _, ok := cur.backends[name]; !ok {
			l := prometheus.Labels{"backend": name}
			for _, v := range []*prometheus.CounterVec{m.requests, m.errors, m.fallbacks, m.retries, m.exhausted, m.bulkheadFull, m.transitions, m.checks} {
				v.DeletePartialMatch(l)
			}
			m.duration.DeletePartialMatch(l)
		}
	}
}

// backendCollector reports the live state of the serving table's backends at scrape time.
type backendCollector struct{ f *Facade }

var (
	descBreaker  = prometheus.NewDesc("ficus_backend_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"backend"}, nil)
	descInFlight = prometheus.NewDesc("ficus_backend_in_flight", "Requests in flight to the backend (holding a bulkhead slot).", []string{"backend"}, nil)
	descQueued   = prometheus.NewDesc("ficus_backend_queue_depth", "Requests waiting for a bulkhead slot.", []string{"backend"}, nil)
	descHealthy  = prometheus.NewDesc("ficus_backend_healthy", "1 if the backend's health check counts it healthy, 0 if unhealthy; absent when its health check is disabled.", []string{"backend"}, nil)
)

// Describe sends the descriptors of the backend metrics.
func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBreaker
	ch <- descInFlight
	ch <- descQueued
	ch <- descHealthy
}

// Collect sends the current value of every backend metric.
func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.f.table.Load()
	if t == nil {
		return
	}
	for name, b := range t.backends {
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, float64(b.breaker.State()), name)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.bulkhead.InFlight()), name)
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(b.bulkhead.Queued()), name)
		if b.health != nil {
			v := 0.0
			if b.health.Healthy() {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, v, name)
		}
	}
}

var _ prometheus.Collector = (*backendCollector)(nil)

// trafficCollector reports the shadow queue and each canary's live share at scrape time.
type trafficCollector struct{ f *Facade }

var (
	descQueue    = prometheus.NewDesc("ficus_shadow_queue_depth", "Shadow samples and re-checks waiting for a worker.", nil, nil)
	descDiffRate = prometheus.NewDesc("ficus_shadow_diff_rate", "Share of a route's compared shadow samples that really differed, over the gates' window.", []string{"route"}, nil)
	descPercent  = prometheus.NewDesc("ficus_canary_percent", "Share of a route's requests the canary takes now: its configured percent, 0 once rolled back.", []string{"route", "backend"}, nil)
	descRolled   = prometheus.NewDesc("ficus_canary_rolled_back", "1 while the facade holds a route's canary rolled back, else 0.", []string{"route"}, nil)
	descShared   = prometheus.NewDesc("ficus_canary_rollback_shared", "1 while the facade holds a route's canary rolled back and the config file says so (percent 0) for every facade, else 0: rolled_back 1 with shared 0 past a few seconds means the rollback holds in this process alone.", []string{"route"}, nil)
)

// Describe sends the descriptors of the shadow and canary gauges.
func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueue
	ch <- descDiffRate
	ch <- descPercent
	ch <- descRolled
	ch <- descShared
}

// Collect sends the shadow queue's depth and each route's diff rate and canary share.
func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(len(c.f.shadowQueue)))
	t := c.f.table.Load()
	if t == nil {
		return
	}
	for _, r := range t.routes {
		if r.live == nil {
			continue
		}
		if r.shadow != nil {
			ch <- prometheus.MustNewConstMetric(descDiffRate, prometheus.GaugeValue, r.live.compared.Counts().Rate(), r.Name)
		}
		if r.canary != nil {
			pct, rolled, shared := r.Config.Canary.Percent, 0.0, 0.0
			if rb := r.live.rolledBack.Load(); rb != nil {
				pct, rolled = 0, 1
				if rb.Shared {
					shared = 1
				}
			}
			ch <- prometheus.MustNewConstMetric(descPercent, prometheus.GaugeValue, pct, r.Name, r.canary.backend.Name)
			ch <- prometheus.MustNewConstMetric(descRolled, prometheus.GaugeValue, rolled, r.Name)
			ch <- prometheus.MustNewConstMetric(descShared, prometheus.GaugeValue, shared, r.Name)
		}
	}
}

// registerRuntime adds the Go runtime and process collectors to a registry the facade made.
func registerRuntime(reg *prometheus.Registry) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
