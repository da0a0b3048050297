// Package config loads, defaults and validates Ficus's config.yaml.
//
// Loading is strict: unknown fields, values of the wrong type, bad durations, bad URLs, dangling
// backend names and duplicate routes are all reported at once, each with the file, line, column
// and field it concerns, before any component opens a socket. Option fields work at their zero
// value; each field's comment states its default.
package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole of config.yaml.
type Config struct {
	// Facade is the strangler-fig router's own settings.
	Facade Facade `yaml:"facade" json:"facade"`
	// Backends are the upstreams routes may name, by name.
	Backends map[string]Backend `yaml:"backends" json:"backends"`
	// Routes are matched by longest path prefix; see Route.
	Routes []Route `yaml:"routes" json:"routes"`
	// Monolith configures the modular monolith.
	Monolith Monolith `yaml:"monolith" json:"monolith"`
	// Services configures the services extracted from the monolith, by capability name.
	Services map[string]Service `yaml:"services" json:"services"`
	// Events configures the event bus.
	Events Events `yaml:"events" json:"events"`
	// Retention bounds the tables Ficus keeps for itself (idempotency keys, outbox, inbox).
	Retention Retention `yaml:"retention" json:"retention"`
	// DryRun is how shadowed writes are marked for the services, and how they check the mark.
	DryRun DryRun `yaml:"dry_run" json:"dry_run"`

	// Path is the file the config was read from; relative paths inside it resolve against its
	// directory.
	Path string `yaml:"-" json:"-"`
}

// Facade is the router's listener and admin settings.
type Facade struct {
	// Listen is the address the facade serves on. Default 127.0.0.1:8080.
	Listen string `yaml:"listen" json:"listen"`
	// Admin is the admin listener.
	Admin Admin `yaml:"admin" json:"admin"`
	// BackendHeader names the response header that says which backend served a request.
	// Default Ficus-Backend.
	BackendHeader string `yaml:"backend_header" json:"backend_header"`
	// BodyTimeout bounds how long a request body may take to arrive, counted from the
	// moment the request's headers were read; a client slower than that is answered 408.
	// Default 30s, at most 1h.
	BodyTimeout Duration `yaml:"body_timeout" json:"body_timeout"`
	// MaxBodyBytes is the largest request body the facade forwards; a larger one is
	// answered 413. Default 10485760 (10 MiB), at most 1073741824 (1 GiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// InternalPaths are the backends' own endpoints (metrics, health checks, debugging),
	// which clients must not reach: a request for one of them, or for a path under one, is
	// answered 404 unless a route names that path (or a longer one) itself. Default
	// [/metrics, /healthz, /readyz, /livez, /debug]; an empty list [] exposes them all. At
	// most 64 paths.
	InternalPaths []string `yaml:"internal_paths" json:"internal_paths"`
	// Shadow bounds the shadow path every route's shadow shares.
	Shadow FacadeShadow `yaml:"shadow" json:"shadow"`
	// Canary says how testers force a canary route's backend.
	Canary FacadeCanary `yaml:"canary" json:"canary"`
	// Record records a sample of live traffic for `ficus compare -traffic`.
	Record FacadeRecord `yaml:"record" json:"record"`
}

// Admin is the facade's admin listener.
type Admin struct {
	// Listen is the admin address. Default 127.0.0.1:9900.
	Listen string `yaml:"listen" json:"listen"`
	// TokenEnv names the environment variable that holds the bearer token.
	// Default FICUS_ADMIN_TOKEN.
	TokenEnv string `yaml:"token_env" json:"token_env"`
	// TokenFile holds the token when the variable is empty: the facade writes a generated
	// token there (mode 0600) and `ficus routes` reads it. Default data/admin.token.
	TokenFile string `yaml:"token_file" json:"token_file"`
	// AllowRemote allows Listen to be an address other hosts can reach (not loopback).
	// Default false: the admin API shows the config and the route table, so it stays on
	// the machine unless the file says otherwise.
	AllowRemote bool `yaml:"allow_remote" json:"allow_remote"`
}

// Backend is one upstream and the resilience policy the facade applies to it.
type Backend struct {
	// URL is the backend's base URL (http or https). Required.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one attempt, from sending the request to the response headers. Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Retry is the retry policy for idempotent requests.
	Retry Retry `yaml:"retry" json:"retry"`
	// Breaker is the circuit breaker's policy.
	Breaker Breaker `yaml:"breaker" json:"breaker"`
	// Bulkhead bounds concurrency to the backend.
	Bulkhead Bulkhead `yaml:"bulkhead" json:"bulkhead"`
	// Health is the backend's active health check.
	Health Health `yaml:"health" json:"health"`
	// DryRun declares that the backend honours the facade's signed Ficus-Dry-Run header: it
	// runs the request and rolls its transaction back, so unsafe requests may be shadowed
	// to it. Default false.
	DryRun bool `yaml:"dry_run" json:"dry_run"`
}

// Retry is a backend's retry policy. Only idempotent requests (safe methods, PUT, DELETE, or
// any request with an Idempotency-Key header) are retried.
type Retry struct {
	// Attempts is the total number of attempts, the first included. Default 1 (no retries).
	Attempts int `yaml:"attempts" json:"attempts"`
	// Backoff is the base of the exponential backoff (full jitter). Default 50ms.
	Backoff Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps one backoff. Default 1s.
	MaxBackoff Duration `yaml:"max_backoff" json:"max_backoff"`
	// Budget caps retries as a fraction of requests (0.2 = at most one retry per five
	// requests). Default 0.2.
	Budget float64 `yaml:"budget" json:"budget"`
}

// Breaker is a backend's circuit breaker policy.
type Breaker struct {
	// ConsecutiveFailures opens the breaker. Default 5.
	ConsecutiveFailures uint32 `yaml:"consecutive_failures" json:"consecutive_failures"`
	// OpenFor is how long the breaker stays open before it lets a trial request through.
	// Default 5s, at most 10m. A passing health check closes it sooner (see Health).
	OpenFor Duration `yaml:"open_for" json:"open_for"`
	// HalfOpenRequests is how many trial requests a half-open breaker admits. Default 1.
	HalfOpenRequests uint32 `yaml:"half_open_requests" json:"half_open_requests"`
}

// Bulkhead bounds the requests in flight to a backend.
type Bulkhead struct {
	// MaxConcurrent is the most requests in flight at once. Default 0: unbounded.
	MaxConcurrent int `yaml:"max_concurrent" json:"max_concurrent"`
	// MaxQueue is how many requests may wait for a slot. Default 0: none wait.
	MaxQueue int `yaml:"max_queue" json:"max_queue"`
	// QueueTimeout is the longest a request waits for a slot. Default 1s.
	QueueTimeout Duration `yaml:"queue_timeout" json:"queue_timeout"`
}

// Health is a backend's active health check: the facade sends GET Path to the backend
// every Interval. A probe passes when the backend answers below 500 within Timeout, so a
// backend without that path is still checked for being up. UnhealthyThreshold failed probes
// in a row mark the backend unhealthy (its requests are refused at once, or go to the
// route's fallback); HealthyThreshold passing probes in a row after a failed one mark it
// healthy again and close its circuit breaker, so a restarted backend gets traffic as soon
// as it answers.
type Health struct {
	// Disabled turns the health check off. Default false: every backend is checked.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// Path is the path probed, appended to the backend URL's path; it may have a query.
	// Default /readyz.
	Path string `yaml:"path" json:"path"`
	// Interval is the time between the end of one probe and the start of the next.
	// Default 1s, between 10ms and 1h.
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one probe. Default 1s, at most 1m.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// HealthyThreshold is how many probes in a row must pass, after one failed, for the
	// backend to count as healthy again. Default 1, at most 100.
	HealthyThreshold int `yaml:"healthy_threshold" json:"healthy_threshold"`
	// UnhealthyThreshold is how many probes in a row must fail for the backend to count
	// as unhealthy. Default 2, at most 100.
	UnhealthyThreshold int `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`
}

// Route says who serves the requests it matches.
type Route struct {
	// Name identifies the route in metrics and on the admin API; names are unique. Default:
	// the match path, then the methods and headers when set ("/api/inventory GET,HEAD").
	Name string `yaml:"name" json:"name"`
	// Match selects requests.
	Match Match `yaml:"match" json:"match"`
	// To names the primary backend. Required.
	To string `yaml:"to" json:"to"`
	// Shadow, if set, mirrors requests to a candidate and compares its answers.
	Shadow *Shadow `yaml:"shadow,omitempty" json:"shadow,omitempty"`
	// Canary, if set, sends a weighted, sticky share of requests to another backend.
	Canary *Canary `yaml:"canary,omitempty" json:"canary,omitempty"`
	// Fallback names a backend that serves safe requests when the primary is unavailable.
	Fallback string `yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// Promote sets the gates of `ficus promote` and the canary's automatic rollback. A
	// route with a shadow or a canary gets the defaults without one.
	Promote *Promote `yaml:"promote,omitempty" json:"promote,omitempty"`
}

// Match selects requests by path prefix, method and headers.
type Match struct {
	// Path is the prefix matched on path segment boundaries. Required, starts with "/".
	Path string `yaml:"path" json:"path"`
	// Methods, if set, restricts the route to these methods.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Headers, if set, must all be present with exactly these values.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Monolith configures the modular monolith.
type Monolith struct {
	// Listen is the monolith's address. Default 127.0.0.1:8081.
	Listen string `yaml:"listen" json:"listen"`
	// Database is "sqlite:PATH" or "postgres://…". Default sqlite:data/monolith.db.
	Database string `yaml:"database" json:"database"`
	// Modules chooses, per capability, the in-process module ("local") or the extracted
	// service ("remote", reached through the backend of the same name, with its timeout,
	// retry, breaker and bulkhead). Default: all local. A change takes effect when the
	// monolith restarts (ficus up restarts it).
	Modules map[string]string `yaml:"modules" json:"modules"`
	// Saga tunes the order saga, which places orders once inventory or payments is remote.
	Saga Saga `yaml:"saga" json:"saga"`
}

// Saga tunes the order saga (docs/saga.md).
type Saga struct {
	// ReplyWithin is how long POST /api/orders (and a cancel) waits for the saga to end
	// before it answers 202 Accepted with the order still pending. Default 2s, at most 30s.
	ReplyWithin Duration `yaml:"reply_within" json:"reply_within"`
	// Timeout is how long a saga may take to place its order before it is cancelled and
	// compensated. Default 30s, between 1s and 24h.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Backoff is the base of the exponential backoff (full jitter) between attempts of a
	// step. Default 50ms, at most 1m.
	Backoff Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps one wait between attempts. Default 5s, between backoff and 10m.
	MaxBackoff Duration `yaml:"max_backoff" json:"max_backoff"`
	// CompensationAttempts bounds the attempts of one compensation; past it the saga is
	// parked as stuck until an operator resumes it (ficus sagas resume). Default 20, at most
	// 10000.
	CompensationAttempts int `yaml:"compensation_attempts" json:"compensation_attempts"`
	// Concurrency bounds the sagas the monolith drives at once; more wait their turn.
	// Default 256, at most 10000.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Lease is how long the monolith keeps a saga to itself after its last step; a saga
	// left by a monolith that died resumes once it has run out. Default 10s, between 1s and
	// 10m.
	Lease Duration `yaml:"lease" json:"lease"`
	// DetailsTimeout bounds the wait for each part (payment, reservation) of GET
	// /api/orders/{id}/details. Default 2s, at most 30s.
	DetailsTimeout Duration `yaml:"details_timeout" json:"details_timeout"`
}

// Service configures one extracted service.
type Service struct {
	// Listen is the service's address. Required.
	Listen string `yaml:"listen" json:"listen"`
	// Database is "sqlite:PATH" or "postgres://…". Default sqlite:data/NAME.db.
	Database string `yaml:"database" json:"database"`
}

// Events configures the event bus.
type Events struct {
	// Bus is "embedded" (an in-process NATS JetStream server), the URL of an external NATS
	// server or cluster ("nats://host:4222", comma-separated for several), or the brokers of
	// a Kafka cluster ("kafka://host:9092,host2:9092"). Default embedded.
	Bus string `yaml:"bus" json:"bus"`
	// Replicas is how many servers keep a copy of each stream (NATS) or topic partition
	// (Kafka), between 1 and 5. Default: 3 when Bus lists three servers or more, else 1. The
	// embedded server is one node: it takes 1 only.
	Replicas int `yaml:"replicas" json:"replicas"`
	// Embedded configures the embedded server.
	Embedded Embedded `yaml:"embedded" json:"embedded"`
	// Kafka configures the topics of a Kafka bus.
	Kafka Kafka `yaml:"kafka" json:"kafka"`
	// Stream bounds the events stream, FICUS_EVENTS. Defaults 168h and 1GiB.
	Stream StreamLimits `yaml:"stream" json:"stream"`
	// DeadLetters bounds the dead-letter stream, FICUS_DLQ. Defaults 720h and 256MiB.
	DeadLetters StreamLimits `yaml:"dead_letters" json:"dead_letters"`
}

// Embedded configures the embedded NATS JetStream server.
type Embedded struct {
	// Listen is the embedded server's client address. Default 127.0.0.1:4222.
	Listen string `yaml:"listen" json:"listen"`
	// Store is the JetStream file store directory. Default data/nats.
	Store string `yaml:"store" json:"store"`
}

// Module modes.
const (
	ModuleLocal  = "local"
	ModuleRemote = "remote"
)

// Capabilities are the monolith's modules, in dependency order.
var Capabilities = []string{"customers", "inventory", "payments", "orders"}

// Extractable are the capabilities that exist as extracted services.
var Extractable = []string{"inventory", "payments"}

// Remote reports whether the monolith reaches any capability through a remote adapter:
// then its orders are placed by the saga.
func (m Monolith) Remote() bool {
	for _, mode := range m.Modules {
		if mode == ModuleRemote {
			return true
		}
	}
	return false
}

// Duration is a time.Duration written as "250ms", "2s" or "1m" in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d as Go writes durations.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a duration. Errors are yaml.TypeErrors so decoding goes on and every
// problem in the file is reported at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{"expects a duration such as 250ms, 2s or 1m"}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("invalid duration %q (want e.g. 250ms, 2s, 1m)", n.Value)}}
	}
	if v < 0 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("negative duration %q", n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes d as a string (JSON on the admin API).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration as MarshalText writes it (what admin API clients decode).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q", b)
	}
	*d = Duration(v)
	return nil
}

// setDefaults fills every unset option with its documented default.
func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Facade.Listen, "127.0.0.1:8080")
	def(&c.Facade.Admin.Listen, "127.0.0.1:9900")
	def(&c.Facade.Admin.TokenEnv, "FICUS_ADMIN_TOKEN")
	def(&c.Facade.Admin.TokenFile, "data/admin.token")
	def(&c.Facade.BackendHeader, "Ficus-Backend")
	if c.Facade.BodyTimeout == 0 {
		c.Facade.BodyTimeout = Duration(30 * time.Second)
	}
	if c.Facade.MaxBodyBytes == 0 {
		c.Facade.MaxBodyBytes = 10 << 20
	}
	if c.Facade.InternalPaths == nil {
		c.Facade.InternalPaths = []string{"/metrics", "/healthz", "/readyz", "/livez", "/debug"}
	}
	for name, b := range c.Backends {
		if b.Timeout == 0 {
			b.Timeout = Duration(30 * time.Second)
		}
		if b.Retry.Attempts == 0 {
			b.Retry.Attempts = 1
		}
		if b.Retry.Backoff == 0 {
			b.Retry.Backoff = Duration(50 * time.Millisecond)
		}
		if b.Retry.MaxBackoff == 0 {
			b.Retry.MaxBackoff = Duration(time.Second)
		}
		if b.Retry.Budget == 0 {
			b.Retry.Budget = 0.2
		}
		if b.Breaker.ConsecutiveFailures == 0 {
			b.Breaker.ConsecutiveFailures = 5
		}
		if b.Breaker.OpenFor == 0 {
			b.Breaker.OpenFor = Duration(5 * time.Second)
		}
		if b.Breaker.HalfOpenRequests == 0 {
			b.Breaker.HalfOpenRequests = 1
		}
		if b.Bulkhead.QueueTimeout == 0 {
			b.Bulkhead.QueueTimeout = Duration(time.Second)
		}
		def(&b.Health.Path, "/readyz")
		if b.Health.Interval == 0 {
			b.Health.Interval = Duration(time.Second)
		}
		if b.Health.Timeout == 0 {
			b.Health.Timeout = Duration(time.Second)
		}
		if b.Health.HealthyThreshold == 0 {
			b.Health.HealthyThreshold = 1
		}
		if b.Health.UnhealthyThreshold == 0 {
			b.Health.UnhealthyThreshold = 2
		}
		c.Backends[name] = b
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		for j, m := range r.Match.Methods {
			r.Match.Methods[j] = strings.ToUpper(m)
		}
		if r.Name == "" {
			r.Name = defaultRouteName(r.Match)
		}
	}
	def(&c.Monolith.Listen, "127.0.0.1:8081")
	def(&c.Monolith.Database, "sqlite:data/monolith.db")
	if c.Monolith.Modules == nil {
		c.Monolith.Modules = map[string]string{}
	}
	for _, m := range Capabilities {
		if c.Monolith.Modules[m] == "" {
			c.Monolith.Modules[m] = ModuleLocal
		}
	}
	sg := &c.Monolith.Saga
	defDuration := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	defDuration(&sg.ReplyWithin, 2*time.Second)
	defDuration(&sg.Timeout, 30*time.Second)
	defDuration(&sg.Backoff, 50*time.Millisecond)
	defDuration(&sg.MaxBackoff, 5*time.Second)
	defDuration(&sg.Lease, 10*time.Second)
	defDuration(&sg.DetailsTimeout, 2*time.Second)
	if sg.CompensationAttempts == 0 {
		sg.CompensationAttempts = 20
	}
	if sg.Concurrency == 0 {
		sg.Concurrency = 256
	}
	for name, s := range c.Services {
		def(&s.Database, "sqlite:data/"+name+".db")
		c.Services[name] = s
	}
	def(&c.Events.Bus, "embedded")
	def(&c.Events.Embedded.Listen, "127.0.0.1:4222")
	def(&c.Events.Embedded.Store, "data/nats")
	c.Events.setDefaults()
	c.setRetentionDefaults()
	c.setTrafficDefaults()
}

// Resolve returns p resolved against the config file's directory when it is relative.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// defaultRouteName names a route after its match.
func defaultRouteName(m Match) string {
	name := m.Path
	if len(m.Methods) > 0 {
		name += " " + strings.Join(m.Methods, ",")
	}
	if len(m.Headers) > 0 {
		hs := make([]string, 0, len(m.Headers))
		for k, v := range m.Headers {
			hs = append(hs, k+"="+v)
		}
		sort.Strings(hs)
		name += " " + strings.Join(hs, ",")
	}
	return name
}
