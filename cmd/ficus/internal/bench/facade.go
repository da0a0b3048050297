package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"
)

// benchPath is the request every target is sent: a small GET the facade routes to its
// inventory backend, the route with every policy on.
const benchPath = "/api/inventory/items/A-1"

// benchBody is the backend's answer, about 100 bytes of JSON like an inventory item.
var benchBody = []byte(`{"sku":"A-1","name":"Fig sticker","price_cents":350,"on_hand":42,"updated_at":"2026-01-01T00:00:00Z"}`)

// The hidden commands of ficus whose processes Facade starts, as `ficus bench NAME`.
const (
	// BackendCommand serves the benchmark backend: `ficus bench facade-backend -listen ADDR`.
	BackendCommand = "facade-backend"
	// StockProxyCommand serves a stock httputil.ReverseProxy: `ficus bench facade-proxy -to
	// URL -listen ADDR`.
	StockProxyCommand = "facade-proxy"
)

// FacadeOptions shape a run of Facade. Self is required; every other field has a default.
type FacadeOptions struct {
	// Self is the ficus binary that runs the backend, the stock proxy and the facade.
	Self string
	// Duration is the load time of each cell (target × connections × round). Default 5s;
	// at least 500ms.
	Duration time.Duration
	// Rounds is how many times each cell is measured; each figure is the median. Default 3.
	Rounds int
	// Conns are the connection counts. Default 16 and 64.
	Conns []int
	// Tool is the load generator: "auto" (wrk when installed, else vegeta; the default),
	// "wrk" or "vegeta".
	Tool string
	// Threads is wrk's thread count. Default 1.
	Threads int
	// Warmup is the load each target gets before the first round. Default 1s.
	Warmup time.Duration
	// Baseline, when set, is another ficus binary whose facade is measured too, as
	// facade-base, to compare two builds in one run.
	Baseline string
	// Record, when set, receives the load report's rows of the run (Report).
	Record func(Row)
}

func (o *FacadeOptions) setDefaults() {
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if len(o.Conns) == 0 {
		o.Conns = []int{16, 64}
	}
	if o.Tool == "" {
		o.Tool = "auto"
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
}

// ErrFacadeOptions wraps every mistake in FacadeOptions.
var ErrFacadeOptions = errors.New("bench facade")

// Facade measures the facade's overhead. It starts a small backend, the facade (all policies
// on), a stock httputil.ReverseProxy and, when it is installed, nginx, each its own process
// on loopback, and sends the same GET to each of them and to the backend directly,
// interleaved, round after round. It prints to stdout the medians of the rounds: requests/s,
// p50/p99, each proxy process's CPU time per request, its RSS, and the ratios to the stock
// proxy and to nginx, the baselines of the same run. Warnings go to stderr.
func Facade(ctx context.Context, opts FacadeOptions, stdout, stderr io.Writer) error {
	opts.setDefaults()
	if opts.Self == "" {
		return fmt.Errorf("%w: FacadeOptions.Self is required", ErrFacadeOptions)
	}
	if opts.Duration < 500*time.Millisecond || opts.Rounds < 1 || opts.Threads < 1 {
		return fmt.Errorf("%w: -duration must be at least 500ms, -rounds and -threads at least 1", ErrFacadeOptions)
	}
	for _, c := range opts.Conns {
		if c < 1 || c > 10000 {
			return fmt.Errorf("%w: -conns: %d is not between 1 and 10000", ErrFacadeOptions, c)
		}
	}
	var gen loadGen
	switch opts.Tool {
	case "auto":
		gen = vegetaGen{}
		if p, err := exec.LookPath("wrk"); err == nil {
			gen = wrkGen{path: p, threads: opts.Threads}
		}
	case "wrk":
		p, err := exec.LookPath("wrk")
		if err != nil {
			return fmt.Errorf("-tool wrk: %w (apt-get install wrk, or use -tool vegeta)", err)
		}
		gen = wrkGen{path: p, threads: opts.Threads}
	case "vegeta":
		gen = vegetaGen{}
	default:
		return fmt.Errorf("%w: -tool %q: want auto, wrk or vegeta", ErrFacadeOptions, opts.Tool)
	}
	conns := opts.Conns

	// Everything the command starts dies with it, however it ends; the deadline bounds a
	// run that hangs.
	targets := 4
	if opts.Baseline != "" {
		targets++
	}
	cells := opts.Rounds * len(conns) * targets
	budget := time.Duration(cells)*(opts.Duration+3*time.Second) + time.Duration(targets)*(opts.Warmup+3*time.Second) + time.Minute
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	b := &facadeBench{stderr: stderr}
	defer b.stopAll()
	if err := b.start(ctx, opts.Self, opts.Baseline); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "facade overhead: GET %s, %s per cell, %d rounds, %s connections, load by %s, %d CPUs (GOMAXPROCS %d)\n",
		benchPath, opts.Duration, opts.Rounds, joinInts(conns), gen.name(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if b.nginxNote != "" {
		fmt.Fprintln(stdout, b.nginxNote)
	}

	for _, t := range b.targets {
		if _, err := b.measure(ctx, gen, t, slices.Max(conns), opts.Warmup); err != nil {
			return fmt.Errorf("warming up %s: %w", t.name, err)
		}
	}
	results := map[cellKey][]cellResult{}
	for r := range opts.Rounds {
		for _, c := range conns {
			for _, t := range b.targets {
				res, err := b.measure(ctx, gen, t, c, opts.Duration)
				if err != nil {
					return fmt.Errorf("round %d, %s at %d connections: %w", r+1, t.name, c, err)
				}
				if res.errors > 0 {
					fmt.Fprintf(stderr, "warning: round %d, %s at %d connections: %d failed requests\n", r+1, t.name, c, res.errors)
				}
				k := cellKey{t.name, c}
				results[k] = append(results[k], res)
			}
		}
	}
	writeBenchTable(stdout, b.targets, conns, results)
	if opts.Record != nil {
		for _, r := range facadeRows(b.targets, conns, results, b.nginxNote) {
			opts.Record(r)
		}
	}
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// ServeBackend serves the benchmark backend on ln until ctx is done, after printing
// "backend listening on http://ADDR" for the parent to read. Each answer waits delay first
// (a slow candidate, for bench shadow).
func ServeBackend(ctx context.Context, ln net.Listener, delay time.Duration, stdout io.Writer) error {
	h := benchBackendHandler()
	if delay > 0 {
		fast := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
			fast.ServeHTTP(w, r)
		})
	}
	return serveBenchProcess(ctx, ln, "backend", h, stdout)
}

// ServeStockProxy serves a stock httputil.ReverseProxy to target on ln until ctx is done,
// after printing "proxy listening on http://ADDR" for the parent to read.
func ServeStockProxy(ctx context.Context, ln net.Listener, target *url.URL, stdout io.Writer) error {
	return serveBenchProcess(ctx, ln, "proxy", stockReverseProxy(target), stdout)
}

// ParseConns reads a comma-separated list of connection counts: "16,64".
func ParseConns(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-conns: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchBackendHandler answers every request with benchBody, allocating as little as it
// can so the backend stays cheap next to the proxies measured.
func benchBackendHandler() http.Handler {
	ct, cl := []string{"application/json"}, []string{strconv.Itoa(len(benchBody))}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Content-Length"] = ct, cl
		_, _ = w.Write(benchBody)
	})
}

// stockReverseProxy is the baseline: httputil.NewSingleHostReverseProxy as the
// documentation shows it. Its one change from http.DefaultTransport is keeping up to 256
// idle connections to the backend instead of 2, so that at 64 connections it proxies
// rather than dials.
func stockReverseProxy(u *url.URL) http.Handler {
	rp := httputil.NewSingleHostReverseProxy(u)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	rp.Transport = t
	return rp
}

// serveBenchProcess serves h on ln until ctx is done, after printing
// "NAME listening on http://ADDR" for the parent to read.
func serveBenchProcess(ctx context.Context, ln net.Listener, name string, h http.Handler, stdout io.Writer) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "%s listening on http://%s\n", name, ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the %s: %w", name, err)
	}
	return nil
}

// benchTarget is one column of the comparison: where to send the load and, for a proxy,
// the process whose CPU and memory it costs.
type benchTarget struct {
	name string
	url  string
	proc *benchProc // nil for the backend itself
}

type cellKey struct {
	target string
	conns  int
}

// cellResult is one measurement: a target at some connections for one round.
type cellResult struct {
	requests int64
	errors   int64
	rps      float64
	p50, p99 time.Duration
	cpuUS    float64 // the proxy process's CPU microseconds per request; 0 for direct
	rssMB    float64 // the proxy process's resident memory at the end of the cell
}

// facadeBench owns the processes of one run.
type facadeBench struct {
	stderr    io.Writer
	procs     []*benchProc
	targets   []benchTarget
	nginxNote string
}

// start launches the backend, then the stock proxy, the facade (and the baseline build's,
// if any) and nginx in front of it.
func (b *facadeBench) start(ctx context.Context, self, baseline string) error {
	dir, err := os.MkdirTemp("", "ficus-bench-facade-")
	if err != nil {
		return err
	}
	b.procs = append(b.procs, &benchProc{name: "tempdir", dir: dir})

	backend, err := b.spawn(ctx, "backend", self, "bench", BackendCommand, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.targets = append(b.targets, benchTarget{name: "direct", url: backend.url + benchPath})

	stock, err := b.spawn(ctx, "stock", self, "bench", StockProxyCommand, "-to", backend.url, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.targets = append(b.targets, benchTarget{name: "stock", url: stock.url + benchPath, proc: stock})

	cfgPath := filepath.Join(dir, "config.yaml")
	if err := renameio.WriteFile(cfgPath, []byte(benchFacadeConfig(backend.url)), 0o600); err != nil {
		return err
	}
	fac, err := b.spawn(ctx, "facade", self, "serve", "facade", "-c", cfgPath, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.targets = append(b.targets, benchTarget{name: "facade", url: fac.url + benchPath, proc: fac})
	if baseline != "" {
		base, err := b.spawn(ctx, "facade-base", baseline, "serve", "facade", "-c", cfgPath, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
		if err != nil {
			return err
		}
		b.targets = append(b.targets, benchTarget{name: "facade-base", url: base.url + benchPath, proc: base})
	}

	ngx, err := exec.LookPath("nginx")
	if err != nil {
		b.nginxNote = "nginx: not installed; its column is left out (apt-get install nginx-light)"
		return nil
	}
	n, err := b.startNginx(ctx, ngx, dir, backend.url)
	if err != nil {
		b.nginxNote = fmt.Sprintf("nginx: could not start (%v); its column is left out", err)
		return nil
	}
	b.targets = append(b.targets, benchTarget{name: "nginx", url: n.url + benchPath, proc: n})
	return nil
}

// benchFacadeConfig routes the benchmark path to the backend with every policy on: an
// attempt timeout, retries with a budget, a breaker, a bulkhead and a fallback, among a
// few other routes, as a real config would have.
func benchFacadeConfig(backendURL string) string {
	return fmt.Sprintf(`backends:
  inventory:
    url: %[1]s
    timeout: 2s
    retry: { attempts: 3, backoff: 10ms, max_backoff: 100ms, budget: 0.2 }
    breaker: { consecutive_failures: 5, open_for: 30s }
    bulkhead: { max_concurrent: 512, max_queue: 512 }
  monolith: { url: %[1]s }
routes:
  - match: { path: /api/orders }
    to: monolith
  - match: { path: /api/payments, headers: { X-Canary: "1" } }
    to: monolith
  - match: { path: /api/inventory }
    to: inventory
    fallback: monolith
  - match: { path: / }
    to: monolith
`, backendURL)
}

// startNginx runs nginx in the foreground with a config of its own in dir: two workers (one
// a core), a keep-alive upstream, no access log.
func (b *facadeBench) startNginx(ctx context.Context, nginx, dir, backendURL string) (*benchProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(backendURL)
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  upstream backend {
    server %[2]s;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, u.Host, port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := renameio.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p := &benchProc{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := p.start(ctx, nginx, []string{"-p", dir, "-e", filepath.Join(dir, "logs", "error.log"), "-c", confPath}, false); err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	if err := waitHTTP(ctx, p.url+benchPath, p); err != nil {
		return nil, fmt.Errorf("%w; nginx said: %s", err, p.output())
	}
	return p, nil
}

// spawn starts one of ficus's own processes and waits until it answers.
func (b *facadeBench) spawn(ctx context.Context, name, self string, args ...string) (*benchProc, error) {
	p := &benchProc{name: name}
	if err := p.start(ctx, self, args, true); err != nil {
		return nil, fmt.Errorf("starting the %s: %w", name, err)
	}
	b.procs = append(b.procs, p)
	if err := waitHTTP(ctx, p.url+benchPath, p); err != nil {
		return nil, fmt.Errorf("starting the %s: %w; it said: %s", name, err, p.output())
	}
	return p, nil
}

// stopAll ends every process the run started, and removes its files.
func (b *facadeBench) stopAll() {
	for _, p := range slices.Backward(b.procs) {
		p.stop()
	}
}

// measure sends load to t for d with conns connections and reads what the proxy process
// spent meanwhile.
func (b *facadeBench) measure(ctx context.Context, gen loadGen, t benchTarget, conns int, d time.Duration) (cellResult, error) {
	var cpu0 time.Duration
	if t.proc != nil {
		if !t.proc.alive() {
			return cellResult{}, fmt.Errorf("the %s process has exited: %s", t.name, t.proc.output())
		}
		cpu0 = treeCPU(t.proc.pid())
	}
	res, err := gen.run(ctx, t.url, conns, d)
	if err != nil {
		return res, err
	}
	if t.proc != nil && res.requests > 0 {
		cpu := treeCPU(t.proc.pid()) - cpu0
		res.cpuUS = float64(cpu.Microseconds()) / float64(res.requests)
		res.rssMB = float64(treeRSS(t.proc.pid())) / (1 << 20)
	}
	// Let the connections the load generator closed drain before the next cell.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(200 * time.Millisecond):
	}
	return res, nil
}

// medianCell is the median of each figure over a cell's rounds.
func medianCell(rs []cellResult) cellResult {
	if len(rs) == 0 {
		return cellResult{}
	}
	pick := func(f func(cellResult) float64) float64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = f(r)
		}
		slices.Sort(vs)
		if len(vs)%2 == 1 {
			return vs[len(vs)/2]
		}
		return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return cellResult{
		rps:   pick(func(r cellResult) float64 { return r.rps }),
		p50:   time.Duration(pick(func(r cellResult) float64 { return float64(r.p50) })),
		p99:   time.Duration(pick(func(r cellResult) float64 { return float64(r.p99) })),
		cpuUS: pick(func(r cellResult) float64 { return r.cpuUS }),
		rssMB: pick(func(r cellResult) float64 { return r.rssMB }),
	}
}

// writeBenchTable prints the medians of the rounds, one row a target and connection count.
func writeBenchTable(w io.Writer, targets []benchTarget, conns []int, results map[cellKey][]cellResult) {
	med := func(k cellKey) cellResult { return medianCell(results[k]) }
	hasNginx := slices.ContainsFunc(targets, func(t benchTarget) bool { return t.name == "nginx" })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconns\treq/s\tp50\tp99\tCPU µs/req\tRSS MB\t× stock\t× nginx\t")
	for _, c := range conns {
		stock, nginx := med(cellKey{"stock", c}), med(cellKey{"nginx", c})
		for _, t := range targets {
			m := med(cellKey{t.name, c})
			cpu, rss, vsNginx := "-", "-", "-"
			if t.proc != nil {
				cpu, rss = fmt.Sprintf("%.1f", m.cpuUS), fmt.Sprintf("%.1f", m.rssMB)
			}
			if hasNginx && nginx.rps > 0 {
				vsNginx = fmt.Sprintf("%.2f", m.rps/nginx.rps)
			}
			vsStock := "-"
			if stock.rps > 0 {
				vsStock = fmt.Sprintf("%.2f", m.rps/stock.rps)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, c, m.rps,
				fmtLatency(m.p50), fmtLatency(m.p99), cpu, rss, vsStock, vsNginx)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "medians of the rounds; CPU is the proxy process's user+system time over the requests it served; × is req/s over the stock proxy's and nginx's")
}

// fmtLatency rounds d to three or four significant figures.
func fmtLatency(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	default:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}
