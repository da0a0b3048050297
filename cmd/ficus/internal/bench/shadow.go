package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// ShadowOptions shape a run of Shadow. Self is required; every other field has a default.
type ShadowOptions struct {
	// Self is the ficus binary that runs the backends and the facades.
	Self string
	// Duration is the load time of each cell (target × round). Default 5s; at least 500ms.
	Duration time.Duration
	// Rounds is how many times each cell is measured; each figure is the median. Default 3.
	Rounds int
	// Conns is the connection count. Default 32.
	Conns int
	// Slow is how long the slow candidate takes to answer. Default 500ms.
	Slow time.Duration
	// Tool is the load generator, as in FacadeOptions. Default "auto".
	Tool string
	// Warmup is the load each target gets before the first round. Default 1s.
	Warmup time.Duration
	// Rate is the fixed request rate of the second table, requests/s. Default: a quarter of what
	// the facade without a shadow served at Conns connections.
	Rate int
	// Record, when set, receives the load report's rows of the run (Report).
	Record func(Row)
}

func (o *ShadowOptions) setDefaults() {
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Conns == 0 {
		o.Conns = 32
	}
	if o.Slow == 0 {
		o.Slow = 500 * time.Millisecond
	}
	if o.Tool == "" {
		o.Tool = "auto"
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
}

// ErrShadowOptions wraps every mistake in ShadowOptions.
var ErrShadowOptions = errors.New("bench shadow")

// Shadow measures what shadowing costs the client and the facade. It starts a primary
// backend, a healthy candidate and a candidate that answers after opts.Slow, and three
// facades, each its own process: one without a shadow, one shadowing every request to the
// healthy candidate, one to the slow one. It sends the same GET to each facade, interleaved,
// round after round, and prints the medians of the rounds: requests/s, the client's p50 and
// p99, the facade process's CPU time per request, and both as ratios to the facade without a
// shadow, measured in the same run. The aims (docs/bench.md): p99 within 10% of off, CPU per
// request at most 1.6× off.
func Shadow(ctx context.Context, opts ShadowOptions, stdout, stderr io.Writer) error {
	opts.setDefaults()
	if opts.Self == "" {
		return fmt.Errorf("%w: ShadowOptions.Self is required", ErrShadowOptions)
	}
	if opts.Duration < 500*time.Millisecond || opts.Rounds < 1 || opts.Conns < 1 || opts.Conns > 10000 || opts.Slow < 0 || opts.Slow > time.Minute {
		return fmt.Errorf("%w: -duration must be at least 500ms, -rounds at least 1, -conns between 1 and 10000, -slow at most 1m", ErrShadowOptions)
	}
	gen, err := pickGen(opts.Tool, 1)
	if err != nil {
		return err
	}
	cells := opts.Rounds * 3 * 2
	budget := time.Duration(cells)*(opts.Duration+3*time.Second) + 3*(opts.Warmup+3*time.Second) + time.Minute
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	b := &facadeBench{stderr: stderr}
	defer b.stopAll()
	if err := b.startShadow(ctx, opts.Self, opts.Slow); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "shadow cost: GET %s, %s per cell, %d rounds, %d connections, load by %s, %d CPUs; slow candidate %s\n",
		benchPath, opts.Duration, opts.Rounds, opts.Conns, gen.name(), runtime.NumCPU(), opts.Slow)
	for _, t := range b.targets {
		if _, err := b.measure(ctx, gen, t, opts.Conns, opts.Warmup); err != nil {
			return fmt.Errorf("warming up %s: %w", t.name, err)
		}
	}
	results := map[cellKey][]cellResult{}
	for r := range opts.Rounds {
		for _, t := range b.targets {
			res, err := b.measure(ctx, gen, t, opts.Conns, opts.Duration)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
			if res.errors > 0 {
				fmt.Fprintf(stderr, "warning: round %d, %s: %d failed requests\n", r+1, t.name, res.errors)
			}
			k := cellKey{t.name, opts.Conns}
			results[k] = append(results[k], res)
		}
	}
	fmt.Fprintf(stdout, "\nat saturation (%d connections, as fast as they go):\n", opts.Conns)
	writeShadowTable(stdout, b.targets, opts.Conns, results)

	// Saturated, every CPU cycle the shadow takes shows as client latency on a machine the
	// load generator and the backends share. At a fixed rate below saturation the client's
	// latency shows what the shadow path itself adds.
	rate := opts.Rate
	if rate <= 0 {
		var rs []float64
		for _, r := range results[cellKey{"shadow off", opts.Conns}] {
			rs = append(rs, r.rps)
		}
		slices.Sort(rs)
		rate = max(int(rs[len(rs)/2]/4), 1)
	}
	fixed := map[cellKey][]cellResult{}
	for r := range opts.Rounds {
		for _, t := range b.targets {
			res, err := b.measureAt(ctx, t, rate, opts.Duration)
			if err != nil {
				return fmt.Errorf("round %d at %d req/s, %s: %w", r+1, rate, t.name, err)
			}
			if res.errors > 0 {
				fmt.Fprintf(stderr, "warning: round %d at %d req/s, %s: %d failed requests\n", r+1, rate, t.name, res.errors)
			}
			fixed[cellKey{t.name, rate}] = append(fixed[cellKey{t.name, rate}], res)
		}
	}
	fmt.Fprintf(stdout, "\nat a fixed rate of %d requests/s (open loop, vegeta):\n", rate)
	writeShadowTable(stdout, b.targets, rate, fixed)
	if opts.Record != nil {
		for _, r := range shadowRows(b.targets, opts.Conns, results, rate, fixed) {
			opts.Record(r)
		}
	}
	return nil
}

// measureAt sends t a fixed rate of requests for d, open loop (vegeta, in process), and
// reads what the facade process spent meanwhile.
func (b *facadeBench) measureAt(ctx context.Context, t benchTarget, rate int, d time.Duration) (cellResult, error) {
	if !t.proc.alive() {
		return cellResult{}, fmt.Errorf("the %s process has exited: %s", t.name, t.proc.output())
	}
	cpu0 := treeCPU(t.proc.pid())
	atk := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second), vegeta.MaxWorkers(1024))
	tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: t.url})
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var m vegeta.Metrics
	for r := range atk.Attack(tgt, vegeta.Rate{Freq: rate, Per: time.Second}, d, "bench-shadow") {
		m.Add(r)
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return cellResult{}, err
	}
	res := cellResult{requests: int64(m.Requests), rps: m.Throughput, p50: m.Latencies.P50, p99: m.Latencies.P99}
	res.errors = int64(float64(m.Requests) * (1 - m.Success))
	if m.Requests > 0 {
		res.cpuUS = float64((treeCPU(t.proc.pid()) - cpu0).Microseconds()) / float64(m.Requests)
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(200 * time.Millisecond):
	}
	return res, nil
}

// pickGen chooses the load generator, as Facade does.
func pickGen(tool string, threads int) (loadGen, error) {
	switch tool {
	case "auto":
		if p, err := exec.LookPath("wrk"); err == nil {
			return wrkGen{path: p, threads: threads}, nil
		}
		return vegetaGen{}, nil
	case "wrk":
		p, err := exec.LookPath("wrk")
		if err != nil {
			return nil, fmt.Errorf("-tool wrk: %w (apt-get install wrk, or use -tool vegeta)", err)
		}
		return wrkGen{path: p, threads: threads}, nil
	case "vegeta":
		return vegetaGen{}, nil
	}
	return nil, fmt.Errorf("%w: -tool %q: want auto, wrk or vegeta", ErrShadowOptions, tool)
}

// startShadow launches the three backends, then the three facades.
func (b *facadeBench) startShadow(ctx context.Context, self string, slow time.Duration) error {
	dir, err := os.MkdirTemp("", "ficus-bench-shadow-")
	if err != nil {
		return err
	}
	b.procs = append(b.procs, &benchProc{name: "tempdir", dir: dir})
	primary, err := b.spawn(ctx, "primary", self, "bench", BackendCommand, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	healthy, err := b.spawn(ctx, "candidate", self, "bench", BackendCommand, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	slowC, err := b.spawn(ctx, "slow candidate", self, "bench", BackendCommand, "-listen", "127.0.0.1:0", "-delay", slow.String())
	if err != nil {
		return err
	}
	for _, f := range []struct{ name, shadow string }{
		{"shadow off", ""},
		{"shadow on", healthy.url},
		{"shadow on, slow", slowC.url},
	} {
		cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", len(b.targets)))
		if err := renameio.WriteFile(cfg, []byte(shadowBenchConfig(primary.url, f.shadow)), 0o600); err != nil {
			return err
		}
		p, err := b.spawn(ctx, f.name, self, "serve", "facade", "-c", cfg, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
		if err != nil {
			return err
		}
		b.targets = append(b.targets, benchTarget{name: f.name, url: p.url + benchPath, proc: p})
	}
	return nil
}

// shadowBenchConfig routes the benchmark path to the primary, shadowing every request to
// candidate when it is set, with the default shadow queue and workers.
func shadowBenchConfig(primary, candidate string) string {
	cfg := fmt.Sprintf(`backends:
  primary: { url: %s, timeout: 2s }
`, primary)
	if candidate != "" {
		cfg += fmt.Sprintf("  candidate: { url: %s, timeout: 2s }\n", candidate)
	}
	cfg += `routes:
  - match: { path: /api/inventory, methods: [GET, HEAD] }
    to: primary
`
	if candidate != "" {
		cfg += "    shadow: { to: candidate, sample: 1.0 }\n"
	}
	return cfg + `  - match: { path: / }
    to: primary
`
}

// writeShadowTable prints the medians of the rounds, with ratios to the facade without a
// shadow.
func writeShadowTable(w io.Writer, targets []benchTarget, conns int, results map[cellKey][]cellResult) {
	med := func(name string) cellResult { return medianCell(results[cellKey{name, conns}]) }
	off := med("shadow off")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "facade\treq/s\tp50\tp99\tCPU µs/req\tp99 × off\tCPU × off\t")
	for _, t := range targets {
		m := med(t.name)
		p99x, cpux := "-", "-"
		if off.p99 > 0 {
			p99x = fmt.Sprintf("%.2f", float64(m.p99)/float64(off.p99))
		}
		if off.cpuUS > 0 {
			cpux = fmt.Sprintf("%.2f", m.cpuUS/off.cpuUS)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t\n", t.name, m.rps, fmtLatency(m.p50), fmtLatency(m.p99), m.cpuUS, p99x, cpux)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "medians of the rounds; latencies are the client's; CPU is the facade process's user+system time per client request, its shadow work included; aims: p99 × off ≤ 1.10, CPU × off ≤ 1.6")
}
