package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ficus-project/ficus/cmd/ficus/internal/bench"
	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
)

// benchCommand measures the system; the work is in package bench.
func benchCommand() *command {
	return &command{
		name:    "bench",
		args:    "TARGET",
		summary: "measure throughput and latency: bench report | orders | events | facade | shadow | migrate",
		about: `Measures throughput and latency, each figure next to a baseline measured in the same run:
orders over HTTP against the same orders placed in process, events end to end against the
pipeline's own drain rate, and the facade against direct calls, a stock reverse proxy and
nginx. docs/bench.md explains the method and the figures.`,
		examples: []string{"ficus bench report -doc docs/bench.md", "ficus bench orders", "ficus bench events -n 20000", "ficus bench facade -duration 10s"},
		subs: []*command{
			benchReportCommand(), benchOrdersCommand(), benchEventsCommand(), benchFacadeCommand(), benchShadowCommand(), benchMigrateCommand(),
			benchBackendCommand(), benchStockProxyCommand(),
		},
	}
}

// benchReportCommand runs every benchmark and prints the one table of the load report.
func benchReportCommand() *command {
	var opts bench.ReportOptions
	var only, buses, doc, detail string
	return &command{
		name:    "report",
		summary: "every benchmark, one table: each figure with its same-run baseline and the ratio (make bench)",
		about: `Runs the benchmarks one after the other — the facade against the stock Go reverse proxy and
nginx, orders over HTTP against in process (SQLite, remote mode, PostgreSQL), events end to
end against the pipeline's drain rate per bus, ficus migrate's backfill and verify against
the monolith's own read, shadowing on against off — and prints one Markdown table: each
figure, its baseline measured in the same run, and the ratio, under a line naming the
machine (CPU, cores, OS, Go, date, load average at the start).

-doc FILE replaces the text between <!-- bench:begin --> and <!-- bench:end --> in FILE with
the table. PostgreSQL rows need a server: -postgres URL, by default $FICUS_TEST_POSTGRES;
without one they say "skipped: no server". Each benchmark's own tables go to -detail (stderr
by default). A benchmark that fails gets a row saying so; the others still run, and the
command exits 1.`,
		examples: []string{
			"ficus bench report -doc docs/bench.md",
			"ficus bench report -only facade,shadow -duration 5s",
			"ficus bench report -only events -buses nats",
		},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&only, "only", strings.Join(bench.ReportBenches(), ","), "comma-separated `BENCHES` to run")
			fs.StringVar(&doc, "doc", "", "Markdown `FILE` whose bench:begin/bench:end section gets the table")
			fs.StringVar(&opts.Postgres, "postgres", "", "PostgreSQL `URL` for the orders rows (default $FICUS_TEST_POSTGRES)")
			fs.StringVar(&buses, "buses", "nats,kafka", "comma-separated event `BUSES`, a row each: nats (an embedded server), kafka (an in-process kfake cluster)")
			fs.DurationVar(&opts.Duration, "duration", 3*time.Second, "load time of each facade and shadow cell")
			fs.IntVar(&opts.Rounds, "rounds", 3, "rounds of the facade and shadow benchmarks (medians)")
			fs.IntVar(&opts.Orders, "orders", 3000, fmt.Sprintf("orders per orders measurement (at most %d)", bench.MaxOrders))
			fs.IntVar(&opts.Events, "events", 10000, "events per events run (at most 1000000)")
			fs.IntVar(&opts.Rows, "rows", 200_000, fmt.Sprintf("rows for the backfill benchmark (at most %d)", bench.MaxMigrateRows))
			fs.StringVar(&opts.Tool, "tool", "auto", "load generator `NAME`: auto, wrk or vegeta")
			fs.StringVar(&detail, "detail", "stderr", "where each benchmark's own tables go: stderr or none")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			const path = "ficus bench report"
			if opts.Duration < 500*time.Millisecond || opts.Rounds < 1 || opts.Orders < 1 || opts.Orders > bench.MaxOrders ||
				opts.Events < 1 || opts.Events > 1_000_000 || opts.Rows < 1 || opts.Rows > bench.MaxMigrateRows {
				return usageError{path, "-duration at least 500ms; -rounds, -orders, -events and -rows at least 1 and within their bounds"}
			}
			switch detail {
			case "stderr":
				opts.Detail = e.stderr
			case "none":
			default:
				return usageError{path, fmt.Sprintf("-detail %q: want stderr or none", detail)}
			}
			opts.Only, opts.Buses = splitList(only), splitList(buses)
			if opts.Postgres == "" {
				opts.Postgres = e.getenv("FICUS_TEST_POSTGRES")
			}
			var err error
			if opts.Self, err = os.Executable(); err != nil {
				return fmt.Errorf("finding the ficus binary to start the benchmark processes: %w", err)
			}
			if doc != "" {
				// Check the document before the run, not after ten minutes of it.
				b, err := os.ReadFile(doc)
				if err != nil {
					return fmt.Errorf("reading the report's document: %w", err)
				}
				if _, err := bench.ReplaceSection(b, ""); err != nil {
					return fmt.Errorf("%s: %w", doc, err)
				}
			}
			m := bench.ThisMachine(time.Now())
			rows, runErr := bench.Report(ctx, opts)
			m.LoadAvgEnd = bench.LoadAverage()
			if errors.Is(runErr, bench.ErrReportOptions) {
				return benchUsage(path, bench.ErrReportOptions, runErr)
			}
			var table strings.Builder
			bench.WriteReport(&table, m, rows)
			fmt.Fprint(e.stdout, "\n"+table.String())
			if doc != "" && len(rows) > 0 {
				if err := writeReportSection(doc, table.String()); err != nil {
					return errors.Join(runErr, err)
				}
				fmt.Fprintf(e.stdout, "\nwritten to %s\n", doc)
			}
			return runErr
		},
	}
}

// writeReportSection replaces the report's section of the Markdown file doc with table,
// atomically.
func writeReportSection(doc, table string) error {
	b, err := os.ReadFile(doc)
	if err != nil {
		return fmt.Errorf("reading the report's document: %w", err)
	}
	out, err := bench.ReplaceSection(b, table)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	if err := renameio.WriteFile(doc, out, 0o644); err != nil {
		return fmt.Errorf("writing the report to %s: %w", doc, err)
	}
	return nil
}

// benchOrdersCommand places orders with concurrent clients.
func benchOrdersCommand() *command {
	var opts bench.OrdersOptions
	var dbs string
	var withKey bool
	return &command{
		name:    "orders",
		summary: "orders/s, p50/p99 and CPU per order, over HTTP and in process, per database engine",
		about: `Places one-line orders with concurrent clients, each waiting for its answer before it sends
the next. For each database engine it measures the same orders twice, on a fresh monolith
each time: in process (the orders module called directly, the baseline) and over HTTP on
loopback (POST /api/orders). It prints orders/s, p50/p99/max latency and CPU per order, and
the HTTP row's ratios to the in-process one.

-db sqlite uses a fresh SQLite file in a temporary directory; a postgres:// URL uses your
server (each run adds its own customer and item). -url measures a running monolith or facade
instead, over HTTP only, with no baseline.`,
		examples: []string{
			"ficus bench orders",
			"ficus bench orders -n 20000 -clients 32 -idempotency=false",
			"ficus bench orders -db sqlite,postgres://postgres@127.0.0.1:5432/bench?sslmode=disable",
			"ficus bench orders -url http://127.0.0.1:8080 -customer CUSTOMER_ID -sku BOOK-GO-1",
		},
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&opts.Orders, "n", 5000, fmt.Sprintf("orders to place in each measurement (at most %d)", bench.MaxOrders))
			fs.IntVar(&opts.Clients, "clients", 16, fmt.Sprintf("concurrent clients (at most %d)", bench.MaxClients))
			fs.StringVar(&dbs, "db", "sqlite", "comma-separated database `ENGINES`: sqlite and/or postgres:// URLs")
			fs.StringVar(&opts.URL, "url", "", "a running monolith or facade `URL` to measure instead (HTTP only, no baseline)")
			fs.StringVar(&opts.Customer, "customer", "", "customer `ID` to order as, with -url")
			fs.StringVar(&opts.SKU, "sku", "STICKER-FIG", "`SKU` to order, with -url")
			fs.BoolVar(&withKey, "idempotency", true, "send an Idempotency-Key with every HTTP order")
			fs.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to `FILE`")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if opts.Orders < 1 || opts.Clients < 1 {
				return usageError{"ficus bench orders", fmt.Sprintf("-n %d, -clients %d: both must be at least 1", opts.Orders, opts.Clients)}
			}
			opts.NoIdempotencyKey = !withKey
			for d := range strings.SplitSeq(dbs, ",") {
				if d = strings.TrimSpace(d); d != "" {
					opts.Databases = append(opts.Databases, d)
				}
			}
			return benchUsage("ficus bench orders", bench.ErrOrdersOptions, bench.Orders(ctx, opts, e.stdout))
		},
	}
}

// benchUsage turns an options mistake of a benchmark into a usage error.
func benchUsage(path string, optionsErr, err error) error {
	if errors.Is(err, optionsErr) {
		return usageError{path, strings.ReplaceAll(err.Error(), optionsErr.Error()+": ", "")}
	}
	return err
}

// benchEventsCommand measures events end to end, and the pipeline alone as its baseline.
func benchEventsCommand() *command {
	var n, rate, producers int
	return &command{
		name:    "events",
		summary: "events end to end (commit → outbox → relay → JetStream → inbox), against the pipeline's drain rate",
		about: `Measures events end to end: producers commit state changes, each with its event recorded in
the same transaction; the outbox relay publishes them to an embedded JetStream server; a
consumer applies each through its inbox in another database. Then, as the baseline of the
same run, the same changes committed first and drained by the pipeline alone. Each run uses
fresh SQLite files and a fresh JetStream store in a temporary directory.`,
		examples: []string{"ficus bench events", "ficus bench events -n 20000 -producers 8", "ficus bench events -rate 2000"},
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&n, "n", 10000, "events (state changes) per run (at most 1000000)")
			fs.IntVar(&rate, "rate", 0, "pace producers at this many events/s (0: flat out)")
			fs.IntVar(&producers, "producers", 2, "goroutines committing changes (at most 256)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if n < 1 || n > 1_000_000 || rate < 0 || producers < 1 || producers > 256 {
				return usageError{"ficus bench events", "-n must be 1–1000000, -producers 1–256, -rate 0 or more"}
			}
			runs := []struct {
				name string
				opts bench.EventsOptions
			}{
				{"end to end", bench.EventsOptions{Events: n, Rate: rate, Producers: producers}},
				{"pipeline only (backlog)", bench.EventsOptions{Events: n, Producers: producers, Backlog: true}},
			}
			var results []bench.EventsResult
			for _, r := range runs {
				dir, err := os.MkdirTemp("", "ficus-bench-events-")
				if err != nil {
					return err
				}
				r.opts.Dir = dir
				res, err := bench.Events(ctx, r.opts)
				os.RemoveAll(dir)
				if err != nil {
					return fmt.Errorf("bench events (%s): %w", r.name, err)
				}
				results = append(results, res)
				fmt.Fprintf(e.stdout, "events %-24s %s\n", r.name+":", res)
			}
			if base := results[1].Throughput; base > 0 {
				fmt.Fprintf(e.stdout, "end to end runs at %.2f× the pipeline's own drain rate: the producing side (one SQLite writer) is the limit when this is well below 1\n",
					results[0].Throughput/base)
			}
			return nil
		},
	}
}

// benchFacadeCommand measures the facade's overhead.
func benchFacadeCommand() *command {
	var opts bench.FacadeOptions
	var conns string
	return &command{
		name:    "facade",
		summary: "the facade's overhead against direct calls, a stock reverse proxy and nginx",
		about: `Measures the facade's overhead. It starts a small backend, the facade (every policy on), a
stock httputil.ReverseProxy and, when it is installed, nginx, each its own process on
loopback, and sends the same GET to each of them and to the backend directly, interleaved,
round after round. It prints the medians of the rounds: requests/s, p50/p99, each proxy
process's CPU time per request and RSS, and the ratios to the stock proxy and to nginx.
The load comes from wrk when it is installed, else from vegeta inside this process.`,
		examples: []string{"ficus bench facade", "ficus bench facade -duration 10s -rounds 5 -conns 16", "ficus bench facade -baseline /tmp/ficus-old"},
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&opts.Duration, "duration", 5*time.Second, "load time of each cell (target × connections × round)")
			fs.IntVar(&opts.Rounds, "rounds", 3, "rounds; each figure is the median of the rounds")
			fs.StringVar(&conns, "conns", "16,64", "comma-separated connection `COUNTS`")
			fs.StringVar(&opts.Tool, "tool", "auto", "load generator `NAME`: auto (wrk when installed, else vegeta), wrk or vegeta")
			fs.IntVar(&opts.Threads, "threads", 1, "wrk threads")
			fs.DurationVar(&opts.Warmup, "warmup", time.Second, "load sent to each target before the first round")
			fs.StringVar(&opts.Baseline, "baseline", "", "another ficus binary (`PATH`) whose facade is measured too, as facade-base")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			var err error
			if opts.Conns, err = bench.ParseConns(conns); err != nil {
				return usageError{"ficus bench facade", err.Error()}
			}
			if opts.Self, err = os.Executable(); err != nil {
				return fmt.Errorf("finding the ficus binary to start the benchmark processes: %w", err)
			}
			return benchUsage("ficus bench facade", bench.ErrFacadeOptions, bench.Facade(ctx, opts, e.stdout, e.stderr))
		},
	}
}

// benchShadowCommand measures what shadowing costs the client and the facade.
func benchShadowCommand() *command {
	var opts bench.ShadowOptions
	return &command{
		name:    "shadow",
		summary: "the client's latency and the facade's CPU with shadowing off and on (candidate healthy and slow)",
		about: `Measures what shadowing costs. It starts a primary backend, a healthy candidate and a slow one
(-slow), and three facades, each its own process: one without a shadow, one shadowing every
request to the healthy candidate, one to the slow one. It sends the same GET to each,
interleaved, round after round, and prints the medians of the rounds: requests/s, the
client's p50/p99, the facade's CPU time per request, and their ratios to the facade without
a shadow in the same run (aims: p99 within 10%, CPU at most 1.6×): once at saturation (as
fast as -conns connections go), once at a fixed rate below it (-rate; open loop), where the
client's latency shows what the shadow path adds rather than what the shared CPUs lack.`,
		examples: []string{"ficus bench shadow", "ficus bench shadow -duration 10s -conns 64"},
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&opts.Duration, "duration", 5*time.Second, "load time of each cell (facade × round)")
			fs.IntVar(&opts.Rounds, "rounds", 3, "rounds; each figure is the median of the rounds")
			fs.IntVar(&opts.Conns, "conns", 32, "connections")
			fs.DurationVar(&opts.Slow, "slow", 500*time.Millisecond, "how long the slow candidate takes to answer")
			fs.StringVar(&opts.Tool, "tool", "auto", "load generator `NAME`: auto (wrk when installed, else vegeta), wrk or vegeta")
			fs.DurationVar(&opts.Warmup, "warmup", time.Second, "load sent to each facade before the first round")
			fs.IntVar(&opts.Rate, "rate", 0, "requests/s of the fixed-rate table (default: a quarter of what the facade without a shadow served)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			var err error
			if opts.Self, err = os.Executable(); err != nil {
				return fmt.Errorf("finding the ficus binary to start the benchmark processes: %w", err)
			}
			return benchUsage("ficus bench shadow", bench.ErrShadowOptions, bench.Shadow(ctx, opts, e.stdout, e.stderr))
		},
	}
}

// benchBackendCommand is the backend process bench facade starts.
func benchBackendCommand() *command {
	var addr string
	var delay time.Duration
	return &command{
		name:     bench.BackendCommand,
		hidden:   true,
		summary:  "internal: the backend ficus bench facade measures against",
		examples: []string{"ficus bench " + bench.BackendCommand + " -listen 127.0.0.1:0"},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&addr, "listen", "127.0.0.1:0", "listen `ADDR`")
			fs.DurationVar(&delay, "delay", 0, "wait this long before each answer")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			ln, err := benchListen(ctx, e, "backend", addr)
			if err != nil {
				return err
			}
			return bench.ServeBackend(ctx, ln, delay, e.stdout)
		},
	}
}

// benchStockProxyCommand is the stock reverse proxy process bench facade starts.
func benchStockProxyCommand() *command {
	var addr, to string
	return &command{
		name:     bench.StockProxyCommand,
		hidden:   true,
		summary:  "internal: the stock httputil.ReverseProxy ficus bench facade compares with",
		examples: []string{"ficus bench " + bench.StockProxyCommand + " -to http://127.0.0.1:9000 -listen 127.0.0.1:0"},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&addr, "listen", "127.0.0.1:0", "listen `ADDR`")
			fs.StringVar(&to, "to", "", "backend `URL` to proxy to (required)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			u, err := url.Parse(to)
			if err != nil || u.Host == "" {
				return usageError{"ficus bench " + bench.StockProxyCommand, fmt.Sprintf("-to %q: want the backend's http:// URL", to)}
			}
			ln, err := benchListen(ctx, e, "proxy", addr)
			if err != nil {
				return err
			}
			return bench.ServeStockProxy(ctx, ln, u, e.stdout)
		},
	}
}

func benchListen(ctx context.Context, e env, name, addr string) (net.Listener, error) {
	inherited, err := listener.Inherit(e.getenv)
	if err != nil {
		return nil, err
	}
	defer inherited.Close()
	return listen(ctx, inherited, name, addr)
}
