package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
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
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// benchPath is the request every target is sent: a small GET the facade routes to its
// inventory backend, the route with every policy on.
const benchPath = "/api/inventory/items/A-1"

// benchBody is the backend's answer, about 100 bytes of JSON like an inventory item.
var benchBody = []byte(`{"sku":"A-1","name":"Fig sticker","price_cents":350,"on_hand":42,"updated_at":"2026-01-01T00:00:00Z"}`)

// cmdBenchFacade measures the facade's overhead: `ficus bench facade [-duration 5s]
// [-rounds 3] [-conns 16,64] [-tool auto|wrk|vegeta]`. It starts a small backend, the
// facade (all policies on), a stock httputil.ReverseProxy and, when it is installed, nginx,
// each its own process on loopback, and sends the same GET to each of them and to the
// backend directly, interleaved, round after round. It prints the medians of the rounds:
// requests/s, p50/p99, each proxy process's CPU time per request, its RSS, and the ratios
// to the stock proxy and to nginx.
//
// Two hidden modes are the processes it starts: `-backend-only -listen ADDR` and
// `-stock-proxy URL -listen ADDR`.
func cmdBenchFacade(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench facade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 5*time.Second, "load time of each cell (target × connections × round)")
	rounds := fs.Int("rounds", 3, "rounds; each figure is the median of the rounds")
	connsFlag := fs.String("conns", "16,64", "comma-separated connection counts")
	tool := fs.String("tool", "auto", "load generator: auto (wrk when installed, else vegeta), wrk or vegeta")
	threads := fs.Int("threads", 1, "wrk threads")
	warmup := fs.Duration("warmup", time.Second, "load sent to each target before the first round")
	baseline := fs.String("baseline", "", "another ficus binary whose facade is measured too, as facade-base, to compare two builds in one run")
	backendOnly := fs.Bool("backend-only", false, "internal: serve the benchmark backend")
	stockProxy := fs.String("stock-proxy", "", "internal: serve a stock httputil.ReverseProxy to this URL")
	listen := fs.String("listen", "127.0.0.1:0", "internal: address of -backend-only or -stock-proxy")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	switch {
	case *backendOnly:
		return serveBenchProcess(ctx, *listen, "backend", benchBackendHandler(), stdout)
	case *stockProxy != "":
		u, err := url.Parse(*stockProxy)
		if err != nil {
			return usageError{fmt.Sprintf("-stock-proxy: %v", err)}
		}
		return serveBenchProcess(ctx, *listen, "proxy", stockReverseProxy(u), stdout)
	}

	conns, err := parseConns(*connsFlag)
	if err != nil {
		return usageError{err.Error()}
	}
	if *duration < 500*time.Millisecond || *rounds < 1 || *threads < 1 {
		return usageError{"-duration must be at least 500ms, -rounds and -threads at least 1"}
	}
	var gen loadGen
	switch *tool {
	case "auto":
		gen = vegetaGen{}
		if p, err := exec.LookPath("wrk"); err == nil {
			gen = wrkGen{path: p, threads: *threads}
		}
	case "wrk":
		p, err := exec.LookPath("wrk")
		if err != nil {
			return fmt.Errorf("-tool wrk: %w (apt-get install wrk, or use -tool vegeta)", err)
		}
		gen = wrkGen{path: p, threads: *threads}
	case "vegeta":
		gen = vegetaGen{}
	default:
		return usageError{fmt.Sprintf("-tool %q: want auto, wrk or vegeta", *tool)}
	}

	// Everything the command starts dies with it, however it ends; the deadline bounds a
	// run that hangs.
	targets := 4
	if *baseline != "" {
		targets++
	}
	cells := *rounds * len(conns) * targets
	budget := time.Duration(cells)*(*duration+3*time.Second) + time.Duration(targets)*(*warmup+3*time.Second) + time.Minute
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	b := &facadeBench{stderr: stderr}
	defer b.stopAll()
	if err := b.start(ctx, *baseline); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "facade overhead: GET %s, %s per cell, %d rounds, %s connections, load by %s, %d CPUs (GOMAXPROCS %d)\n",
		benchPath, *duration, *rounds, *connsFlag, gen.name(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if b.nginxNote != "" {
		fmt.Fprintln(stdout, b.nginxNote)
	}

	for _, t := range b.targets {
		if _, err := b.measure(ctx, gen, t, slices.Max(conns), *warmup); err != nil {
			return fmt.Errorf("warming up %s: %w", t.name, err)
		}
	}
	results := map[cellKey][]cellResult{}
	for r := range *rounds {
		for _, c := range conns {
			for _, t := range b.targets {
				res, err := b.measure(ctx, gen, t, c, *duration)
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
	return nil
}

// parseConns reads "16,64".
func parseConns(s string) ([]int, error) {
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

// serveBenchProcess serves h on addr until ctx is done, after printing
// "NAME listening on http://ADDR" for the parent to read.
func serveBenchProcess(ctx context.Context, addr, name string, h http.Handler, stdout io.Writer) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for the %s: %w", name, err)
	}
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
func (b *facadeBench) start(ctx context.Context, baseline string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ficus binary to start the benchmark processes: %w", err)
	}
	dir, err := os.MkdirTemp("", "ficus-bench-facade-")
	if err != nil {
		return err
	}
	b.procs = append(b.procs, &benchProc{name: "tempdir", dir: dir})

	backend, err := b.spawn(ctx, "backend", self, "bench", "facade", "-backend-only", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.targets = append(b.targets, benchTarget{name: "direct", url: backend.url + benchPath})

	stock, err := b.spawn(ctx, "stock", self, "bench", "facade", "-stock-proxy", backend.url, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.targets = append(b.targets, benchTarget{name: "stock", url: stock.url + benchPath, proc: stock})

	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchFacadeConfig(backend.url)), 0o600); err != nil {
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
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
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

// writeBenchTable prints the medians of the rounds, one row a target and connection count.
func writeBenchTable(w io.Writer, targets []benchTarget, conns []int, results map[cellKey][]cellResult) {
	med := func(k cellKey) cellResult {
		rs := results[k]
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

// loadGen sends closed-loop load: conns connections, each sending its next request as
// soon as the last one is answered.
type loadGen interface {
	name() string
	run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error)
}

// wrkGen runs wrk, the cheapest load generator for the machine it shares.
type wrkGen struct {
	path    string
	threads int
}

func (g wrkGen) name() string { return fmt.Sprintf("wrk -t %d", g.threads) }

func (g wrkGen) run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	threads := min(g.threads, conns)
	secs := max(1, int((d+time.Second/2)/time.Second))
	cmd := exec.CommandContext(ctx, g.path, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return cellResult{}, ctx.Err()
	}
	if err != nil {
		return cellResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return cellResult{}, fmt.Errorf("reading wrk's output: %w:\n%s", err, out)
	}
	return res, nil
}

// parseWrk reads the figures of `wrk --latency`.
func parseWrk(out string) (cellResult, error) {
	var res cellResult
	var haveRPS, haveReqs bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return res, fmt.Errorf("requests/s %q: %w", f[1], err)
			}
			res.rps, haveRPS = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return res, fmt.Errorf("requests %q: %w", f[0], err)
			}
			res.requests, haveReqs = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return res, err
			}
			if f[0] == "50%" {
				res.p50 = v
			} else {
				res.p99 = v
			}
		case len(f) == 5 && f[0] == "Non-2xx":
			v, _ := strconv.ParseInt(f[4], 10, 64)
			res.errors += v
		case len(f) >= 3 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				v, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				res.errors += v
			}
		}
	}
	if !haveRPS || !haveReqs || res.p50 == 0 {
		return res, errors.New("no Requests/sec, request count or latency distribution")
	}
	return res, nil
}

// parseWrkDuration reads wrk's durations: 188.00us, 1.27ms, 2.01s, 1.00m (minutes, as
// time.ParseDuration reads it too).
func parseWrkDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("latency %q: %w", s, err)
	}
	return d, nil
}

// vegetaGen sends the load from this process with vegeta, for machines without wrk.
type vegetaGen struct{}

func (vegetaGen) name() string { return "vegeta (in process)" }

func (vegetaGen) run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error) {
	atk := vegeta.NewAttacker(vegeta.Workers(uint64(conns)), vegeta.MaxWorkers(uint64(conns)),
		vegeta.Connections(conns), vegeta.MaxConnections(conns), vegeta.KeepAlive(true),
		vegeta.Timeout(10*time.Second))
	tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var m vegeta.Metrics
	for r := range atk.Attack(tgt, vegeta.Rate{Freq: 0}, d, "bench") {
		m.Add(r)
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return cellResult{}, err
	}
	res := cellResult{requests: int64(m.Requests), rps: m.Throughput, p50: m.Latencies.P50, p99: m.Latencies.P99}
	res.errors = int64(float64(m.Requests) * (1 - m.Success))
	if m.Requests == 0 {
		return res, fmt.Errorf("no requests sent: %v", m.Errors)
	}
	return res, nil
}

// benchProc is a process the benchmark started, in its own process group so that it and
// anything it starts end together.
type benchProc struct {
	name string
	url  string
	dir  string // a directory to remove on stop, for the pseudo-process that owns it
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder // the first 8 KiB of what it wrote, for error messages
}

// Write keeps the first 8 KiB of the process's output for error messages.
func (p *benchProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if room := 8<<10 - p.out.Len(); room > 0 {
		p.out.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (p *benchProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.out.String())
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

func (p *benchProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start runs path with args. When announces is set the process prints "… listening on
// http://ADDR" and that becomes p.url.
func (p *benchProc) start(ctx context.Context, path string, args []string, announces bool) error {
	p.cmd = exec.Command(path, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Env = append(os.Environ(), "FICUS_ADMIN_TOKEN=bench-facade")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	var pr *os.File
	if announces {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer w.Close()
		pr, p.cmd.Stdout = r, w
	}
	if err := p.cmd.Start(); err != nil {
		if pr != nil {
			pr.Close()
		}
		return err
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if !announces {
		return nil
	}
	addr := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), " listening on "); ok && !sent {
				addr <- u
				sent = true
			}
			_, _ = p.Write(append(sc.Bytes(), '\n'))
		}
	}()
	select {
	case p.url = <-addr:
		return nil
	case <-p.done:
		return fmt.Errorf("exited at start: %s", p.output())
	case <-time.After(30 * time.Second):
		return errors.New("printed no address within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends the process group SIGTERM, then SIGKILL after 3s.
func (p *benchProc) stop() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// waitHTTP polls u until it answers 200.
func waitHTTP(ctx context.Context, u string, p *benchProc) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if !p.alive() {
			return errors.New("the process exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 within 15s: %w", u, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// treeCPU returns the user+system CPU time of pid and its live children (nginx's workers),
// read from /proc.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	for _, p := range procTree(pid) {
		f := procStat(p)
		if len(f) < 15 {
			continue
		}
		// Fields after the command: state ppid … utime (14th of the line) stime (15th).
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * clockTick
	}
	return total
}

// treeRSS returns the resident memory in bytes of pid and its live children.
func treeRSS(pid int) int64 {
	var total int64
	for _, p := range procTree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					total += kb << 10
				}
			}
		}
	}
	return total
}

// procStat returns the fields of /proc/PID/stat after the command name, state first.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procTree returns pid and its direct children.
func procTree(pid int) []int {
	out := []int{pid}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	ppid := strconv.Itoa(pid)
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if f := procStat(n); len(f) > 1 && f[1] == ppid {
			out = append(out, n)
		}
	}
	return out
}
