// Package facade is Ficus's strangler-fig router: it sends each request to the backend its
// route names, through that backend's resilience chain, and swaps its whole route table
// atomically when config.yaml changes.
//
// A Facade serves two handlers: Handler, the proxy clients talk to, and AdminHandler, the
// token-protected admin API (route table, backends, effective config, last reload,
// Prometheus metrics). The caller owns the listeners and servers, or hands them to Serve.
// New starts the backends' health checks; Close stops them.
package facade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are a Facade's dependencies. Every field works at its zero value.
type Options struct {
	// Logger receives reloads, breaker and health changes, and failed requests (at most a
	// line a second of each kind). Default: discards.
	Logger *slog.Logger
	// AdminToken is the admin API's bearer token, as AdminToken returns it. Default: the
	// variable facade.admin.token_env names (read with Getenv), else a random token that
	// is never shown, which keeps the admin API closed to everyone.
	AdminToken string
	// AdminTokenSource says where AdminToken came from ("$FICUS_ADMIN_TOKEN", a file
	// path); it is logged, the token never is. Default "Options.AdminToken".
	AdminTokenSource string
	// Getenv reads the variable named by facade.admin.token_env when AdminToken is empty.
	// Default: a function that finds nothing.
	Getenv func(string) string
	// Registry receives the facade's metrics and is served on /metrics. Default: a new
	// registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Transport sends requests to backends. Default: NewTransport().
	Transport http.RoundTripper
	// Debounce is how long Watch waits after the last change to the config file before it
	// reloads. Default 100ms.
	Debounce time.Duration
	// Now tells the time of reloads, of the gates' windows and of canary rollbacks. Default
	// time.Now.
	Now func() time.Time
	// Endpoints are the API's operations as "METHOD /path/{param}" templates (the OpenAPI
	// document's), which name endpoints in shadow reports. A path no template matches is
	// named after itself, segments holding a digit written {id}. Default none.
	Endpoints []string
	// DryRunSecret signs the Ficus-Dry-Run header of shadowed writes (dryrun.LoadSecret);
	// the services verify it with the same secret. Default none: a route that shadows an
	// unsafe method is refused.
	DryRunSecret []byte
	// Instance names this process in the comment a canary rollback writes to the config
	// file ("rolled back … by facade 127.0.0.1:8080 pid 4242"). Default "pid N", N this
	// process's id.
	Instance string
	// Rand draws the random numbers of shadow sampling and of unkeyed canary placement.
	// Default math/rand/v2's Uint64.
	Rand func() uint64
	// System reports what the dashboard shows of the parts the facade does not run — the
	// outboxes, the order sagas, the data migrations (see System). Default none: those
	// panels say so.
	System System
}

// Facade is the strangler-fig router.
type Facade struct {
	log       *slog.Logger
	now       func() time.Time
	debounce  time.Duration
	registry  *prometheus.Registry
	metrics   *metrics
	transport http.RoundTripper
	proxy     *httputil.ReverseProxy
	ids       *idSource
	token     string
	logs      *logLimiter
	endpoints *compare.Endpoints
	signer    *dryrun.Signer // nil without a secret
	draw      func() uint64
	system    *systemCache // nil without Options.System

	// shadowQueue holds the samples and re-checks waiting for a shadow worker.
	shadowQueue chan job
	// recordQueue holds the recorded requests waiting to be written.
	recordQueue chan *recordLine
	diffFile    diffFile

	// life bounds the backends' health checks; Close ends it and waits for them.
	life     context.Context
	endLife  context.CancelFunc
	checkers sync.WaitGroup

	// instance names this process in a shared rollback's comment.
	instance string
	// sharing counts the rollbacks being written to the config file; shareMu and closed
	// keep a new one from starting once Close waits for them.
	shareMu sync.Mutex
	closed  bool
	sharing sync.WaitGroup

	table    atomic.Pointer[table]
	draining atomic.Bool

	// watching, if set, is called once Watch watches the config's directory (for tests,
	// which must not edit the file before that).
	watching func()

	reloadMu sync.Mutex // serializes reloads
	lastMu   sync.Mutex
	last     ReloadResult
}

// ReloadResult is the outcome of the last attempt to load a config.
type ReloadResult struct {
	// Time is when the attempt was made.
	Time time.Time `json:"time"`
	// OK says whether the new config was accepted.
	OK bool `json:"ok"`
	// Errors lists what was wrong with a rejected config, one problem a line
	// ("config.yaml:12:9: routes[0].to: unknown backend ...").
	Errors []string `json:"errors,omitempty"`
	// Path is the file the config was read from, if any.
	Path string `json:"path,omitempty"`
	// Generation is the generation of the config serving now (1 for the first).
	Generation uint64 `json:"generation"`
}

// New returns a facade serving cfg, a config that config.Load has defaulted and validated.
func New(cfg *config.Config, opts Options) (*Facade, error) {
	f := &Facade{
		log:       opts.Logger,
		now:       opts.Now,
		debounce:  opts.Debounce,
		registry:  opts.Registry,
		transport: opts.Transport,
	}
	if f.log == nil {
		f.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.debounce <= 0 {
		f.debounce = 100 * time.Millisecond
	}
	if f.registry == nil {
		f.registry = prometheus.NewRegistry()
		registerRuntime(f.registry)
	}
	if f.transport == nil {
		f.transport = NewTransport()
	}
	f.draw = opts.Rand
	f.instance = opts.Instance
	if f.instance == "" {
		f.instance = fmt.Sprintf("pid %d", os.Getpid())
	}
	if f.draw == nil {
		f.draw = rand.Uint64
	}
	if opts.System != nil {
		f.system = &systemCache{source: opts.System}
	}
	if len(opts.DryRunSecret) > 0 {
		f.signer = dryrun.NewSigner(opts.DryRunSecret, f.now)
	}
	var err error
	if f.endpoints, err = compare.NewEndpoints(opts.Endpoints); err != nil {
		return nil, fmt.Errorf("naming endpoints: %w", err)
	}
	f.diffFile.log = f.log
	if f.metrics, err = newMetrics(f.registry, f); err != nil {
		return nil, fmt.Errorf("registering facade metrics: %w", err)
	}
	f.ids = newIDSource()
	f.logs = newLogLimiter(time.Second, f.now)
	f.token = adminToken(cfg, opts, f.log)
	f.proxy = &httputil.ReverseProxy{
		Rewrite:       f.rewrite,
		Transport:     dispatcher{f},
		FlushInterval: 0, // flushWriter flushes each write; see there
		BufferPool:    &bufferPool{},
		ErrorHandler:  f.proxyError,
		ErrorLog:      errorLog(f.log, f.logs),
	}
	t, err := f.build(cfg, nil, f.now())
	if err != nil {
		return nil, fmt.Errorf("building the route table: %w", err)
	}
	f.table.Store(t)
	f.last = ReloadResult{Time: t.loaded, OK: true, Path: cfg.Path, Generation: t.generation}
	f.metrics.reloadOK.Inc() // the first load is a load like any other
	f.metrics.lastReload.Set(1)
	f.metrics.generation.Set(float64(t.generation))
	f.life, f.endLife = context.WithCancel(context.Background())
	for _, b := range t.backends {
		b.start(f.life, &f.checkers)
	}
	// The queue and the workers are sized once: a reload does not resize them.
	f.startShadow(t.shadow.Queue, t.shadow.Concurrency)
	f.startRecorder()
	f.startHistory()
	return f, nil
}

// adminToken picks the admin API's token from opts, and logs where it came from, never the
// token itself.
func adminToken(cfg *config.Config, opts Options, log *slog.Logger) string {
	token, source := opts.AdminToken, opts.AdminTokenSource
	if token != "" && source == "" {
		source = "Options.AdminToken"
	}
	if token == "" && opts.Getenv != nil {
		if token = strings.TrimSpace(opts.Getenv(cfg.Facade.Admin.TokenEnv)); token != "" {
			source = "$" + cfg.Facade.Admin.TokenEnv
		}
	}
	if token == "" {
		log.Warn("no admin token given; the admin API refuses every request but /healthz and /readyz",
			"variable", cfg.Facade.Admin.TokenEnv, "token_file", cfg.Facade.Admin.TokenFile)
		return randomToken()
	}
	log.Info("admin API token loaded", "source", source)
	return token
}

// Handler returns the proxy clients talk to.
func (f *Facade) Handler() http.Handler { return http.HandlerFunc(f.serve) }

// Config returns the config serving now. It is shared and must not be modified.
func (f *Facade) Config() *config.Config { return f.table.Load().cfg }

// Drain marks the facade as shutting down: /readyz answers 503 from now on, so load
// balancers stop sending it new requests while the server drains the ones in flight.
func (f *Facade) Drain() { f.draining.Store(true) }

// Reload swaps in a route table built from cfg, a config that config.Load has defaulted
// and validated. Backends whose config is unchanged keep their resilience state. Requests
// in flight finish on the table they started with.
func (f *Facade) Reload(cfg *config.Config) error {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	err := f.swap(cfg)
	f.record(cfg.Path, err)
	return err
}

// ReloadFile loads, validates and swaps in the config at path. A config with any problem
// is rejected whole: the error (a *config.Error for file problems) is returned, logged,
// kept for the admin API and counted, and the current config keeps serving.
func (f *Facade) ReloadFile(path string) error {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	cfg, err := config.Load(path)
	if err == nil {
		err = f.swap(cfg)
	}
	f.record(path, err)
	return err
}

// swap builds and installs a new table. f.reloadMu must be held.
func (f *Facade) swap(cfg *config.Config) error {
	old := f.table.Load()
	t, err := f.build(cfg, old, f.now())
	if err != nil {
		return fmt.Errorf("building the route table: %w", err)
	}
	f.table.Store(t)
	f.metrics.forget(old, t)
	f.metrics.history.retain(t.backends)
	gone := retired(old, t)
	for _, b := range gone {
		b.stop()
	}
	for _, b := range t.backends {
		b.start(f.life, &f.checkers) // only the new ones start
	}
	logRetired(f.log, gone)
	return nil
}

// record keeps, logs and counts the outcome of a reload. f.reloadMu must be held.
func (f *Facade) record(path string, err error) {
	t := f.table.Load()
	res := ReloadResult{Time: f.now(), OK: err == nil, Path: path, Generation: t.generation}
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				res.Errors = append(res.Errors, p.Error())
			}
		} else {
			res.Errors = []string{err.Error()}
		}
		f.metrics.reloadFailed.Inc()
		f.metrics.lastReload.Set(0)
		f.log.Error("config rejected; the last good config keeps serving",
			"path", path, "generation", t.generation, "problems", res.Errors)
	} else {
		f.metrics.reloadOK.Inc()
		f.metrics.lastReload.Set(1)
		f.metrics.generation.Set(float64(t.generation))
		f.log.Info("config reloaded", "path", path, "generation", t.generation, "routes", len(t.routes), "backends", len(t.backends))
	}
	f.lastMu.Lock()
	f.last = res
	f.lastMu.Unlock()
}

// LastReload returns the outcome of the last reload (or of the first load).
func (f *Facade) LastReload() ReloadResult {
	f.lastMu.Lock()
	defer f.lastMu.Unlock()
	r := f.last
	r.Errors = append([]string(nil), r.Errors...)
	return r
}

// Close stops the backends' health checks, waits for them, and releases the facade's idle
// backend connections. Watch stops with its context.
func (f *Facade) Close() {
	f.reloadMu.Lock() // no reload starts a health check while they stop
	defer f.reloadMu.Unlock()
	f.endLife()
	f.checkers.Wait()
	f.shareMu.Lock()
	f.closed = true
	f.shareMu.Unlock()
	f.sharing.Wait()
	f.diffFile.close()
	if c, ok := f.transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// contextKey keys the exchange in a request's context.
type contextKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(contextKey{}).(*exchange)
	return ex
}
