package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/schollz/progressbar/v3"

	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/extracted/payments"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/compare/scenarios"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// compareFlags are ficus compare's flags.
type compareFlags struct {
	suites, only, jsonPath  string
	a, b, bSetup, bCaughtUp string
	timeout                 time.Duration
	traffic                 string
	threshold               float64
	writes                  bool
}

// extractedSuites are the suites ficus compare runs by itself: one per extracted service.
var extractedSuites = []string{"inventory", "payments"}

// compareCommand compares the monolith with the extracted services, or any two base URLs.
func compareCommand() *command {
	var f compareFlags
	return &command{
		name:    "compare",
		summary: "replay recorded traffic or the comparison scenarios against two sides and report every difference",
		about: `Runs the shop's comparison scenarios (docs/compare.md) against two sides, A and B, one step at a
time on each, compares their answers (status, the headers that matter, JSON bodies
semantically; generated ids and timestamps matched) and checks every answer against the
OpenAPI document. It prints, per suite, a report per endpoint with each difference as a diff
and the request that caused it, and exits 1 on any difference or failed expectation.

Without -a and -b it compares each extracted service with the monolith module it replaces,
all in this process on loopback ports, each on a fresh SQLite database in a temporary
directory: the inventory suite against the monolith and the inventory service, the payments
suite against the monolith and the payments service, whose customers are set up through a
second monolith and reach the service's copy through an embedded NATS bus (each step after a
setup waits until the copy has caught up).

With -a URL -b URL it runs the suites -suite names against two running servers, which
should start on fresh databases. -b-setup sends B's setup steps (data B does not own, such
as customers) elsewhere, and -b-caught-up names a URL polled after them until it answers
200, as the payments service's /readyz/customers does.

With -traffic FILE -a URL -b URL it replays recorded traffic instead: a JSON-lines file of
requests, as the facade records a redacted sample of live traffic (facade.record in the
config), one request at a time on A then on B, and prints the same report. Secret headers
recorded as [redacted] are not sent. Unsafe requests (POST, PUT, PATCH, DELETE) are skipped
unless -writes: they would act on both sides. A progress bar shows on a terminal.

It exits 1 when a failed expectation (or, replaying, a failed request) is found, or when
the share of differing answers is over -threshold (default 0: any difference).`,
		examples: []string{
			"ficus compare",
			"ficus compare -suite payments -json report.json",
			"ficus compare -suite inventory -a http://127.0.0.1:8081 -b http://127.0.0.1:8082",
			"ficus compare -traffic data/traffic.jsonl -a http://127.0.0.1:8081 -b http://127.0.0.1:8082 -threshold 0.01",
			"ficus compare -suite payments -a http://127.0.0.1:8081 -b http://127.0.0.1:8083 \\\n      -b-setup http://127.0.0.1:18081 -b-caught-up http://127.0.0.1:8083/readyz/customers",
		},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.suites, "suite", "", "the suites to run, comma-separated `NAMES` (default: inventory,payments; with -a and -b, required)")
			fs.StringVar(&f.only, "scenario", "", "run only these scenarios, comma-separated `NAMES` (default: all of each suite)")
			fs.StringVar(&f.jsonPath, "json", "", "also write the reports to `FILE` as JSON (a list, one per suite)")
			fs.StringVar(&f.a, "a", "", "side A's base `URL` (with -b: compare two running servers)")
			fs.StringVar(&f.b, "b", "", "side B's base `URL`")
			fs.StringVar(&f.bSetup, "b-setup", "", "where B's setup steps go, a base `URL` (default: -b)")
			fs.StringVar(&f.bCaughtUp, "b-caught-up", "", "a `URL` polled after B's setup steps until it answers 200")
			fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up on the whole run after this long")
			fs.StringVar(&f.traffic, "traffic", "", "replay the recorded requests of `FILE` (JSON lines) against -a and -b")
			fs.Float64Var(&f.threshold, "threshold", 0, "exit 1 only when the share of differing answers is over `RATE` (0 to 1)")
			fs.BoolVar(&f.writes, "writes", false, "replay unsafe requests too (they act on both sides)")
		},
		run: func(ctx context.Context, e env, _ []string) error { return runCompare(ctx, e, f) },
	}
}

func runCompare(ctx context.Context, e env, f compareFlags) error {
	urlMode := f.a != "" || f.b != ""
	names := splitList(f.suites)
	switch {
	case urlMode && (f.a == "" || f.b == ""):
		return usageError{"ficus compare", "-a and -b go together: give both base URLs, or neither to compare the extracted services with the monolith"}
	case f.traffic != "" && !urlMode:
		return usageError{"ficus compare", "-traffic replays against two running servers: give -a and -b"}
	case !urlMode && (f.bSetup != "" || f.bCaughtUp != ""):
		return usageError{"ficus compare", "-b-setup and -b-caught-up need -a and -b"}
	case urlMode && len(names) == 0 && f.traffic == "":
		return usageError{"ficus compare", "with -a and -b, name the suites to run with -suite (" + strings.Join(scenarios.Names(), ", ") + ")"}
	case f.timeout <= 0:
		return usageError{"ficus compare", "-timeout must be positive"}
	case f.threshold < 0 || f.threshold > 1:
		return usageError{"ficus compare", "-threshold is a share of answers, from 0 to 1"}
	case f.traffic != "" && (!urlMode || len(names) > 0 || f.only != "" || f.bSetup != "" || f.bCaughtUp != ""):
		return usageError{"ficus compare", "-traffic replays against -a and -b; it takes no -suite, -scenario, -b-setup or -b-caught-up"}
	case f.writes && f.traffic == "":
		return usageError{"ficus compare", "-writes goes with -traffic"}
	}
	if f.traffic != "" {
		return runReplay(ctx, e, f)
	}
	if len(names) == 0 {
		names = extractedSuites
	}
	for _, n := range names {
		if !urlMode && !slices.Contains(extractedSuites, n) {
			return usageError{"ficus compare", fmt.Sprintf("suite %q has no extracted service to compare (have %s); compare other suites with -a and -b", n, strings.Join(extractedSuites, ", "))}
		}
		if !slices.Contains(scenarios.Names(), n) {
			return usageError{"ficus compare", fmt.Sprintf("unknown suite %q (have %s)", n, strings.Join(scenarios.Names(), ", "))}
		}
	}
	for flagName, u := range map[string]string{"-a": f.a, "-b": f.b, "-b-setup": f.bSetup, "-b-caught-up": f.bCaughtUp} {
		if pu, err := url.Parse(u); u != "" && (err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "") {
			return usageError{"ficus compare", fmt.Sprintf("%s %q is not an http:// or https:// URL", flagName, u)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	v, err := contract.NewValidator()
	if err != nil {
		return err
	}
	opts := scenario.Options{Endpoints: v.Operations(), Check: v.CheckResponse, Scenarios: splitList(f.only)}

	var reports []*scenario.Report
	var failed []string
	for _, name := range names {
		suite, err := scenarios.Load(name)
		if err != nil {
			return err
		}
		var rep *scenario.Report
		if urlMode {
			a := scenario.Target{Name: "A", URL: f.a}
			b := scenario.Target{Name: "B", URL: f.b, SetupURL: f.bSetup}
			if f.bCaughtUp != "" {
				b.CaughtUp = pollOK(f.bCaughtUp)
			}
			rep, err = scenario.Run(ctx, suite, a, b, opts)
		} else {
			rep, err = compareExtracted(ctx, e, name, suite, opts)
		}
		if err != nil {
			return fmt.Errorf("comparing suite %s: %w", name, err)
		}
		if err := rep.WriteText(e.stdout); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout)
		reports = append(reports, rep)
		if overThreshold(rep, f.threshold) {
			failed = append(failed, name)
		}
	}
	if f.jsonPath != "" {
		if err := writeReports(f.jsonPath, reports); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(e.stderr, "ficus compare: FAILED: %s (see the differences and failed expectations above)\n", strings.Join(failed, ", "))
		return exitError{1}
	}
	fmt.Fprintf(e.stdout, "ficus compare: passed: %s\n", strings.Join(names, ", "))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// writeReports writes the reports to path as one JSON list.
func writeReports(path string, reports []*scenario.Report) error {
	b, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return fmt.Errorf("writing the reports: %w", err)
	}
	// Atomically, as every file Ficus writes: a reader never sees half a report.
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the reports: %w", err)
	}
	return nil
}

// pollOK returns a CaughtUp that polls u until it answers 200, for as long as its context
// allows.
func pollOK(u string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		return poll(ctx, func(ctx context.Context) (bool, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return false, err.Error()
			}
			resp, err := client.Do(req)
			if err != nil {
				return false, err.Error()
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, fmt.Sprintf("GET %s: %s %s", u, resp.Status, body)
		})
	}
}

// poll calls check every 10ms until it reports done, or ctx ends; then the error carries
// check's last word.
func poll(ctx context.Context, check func(context.Context) (bool, string)) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		done, last := check(ctx)
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %s", ctx.Err(), last)
		case <-t.C:
		}
	}
}

// compareExtracted runs suite name against the monolith (A) and the service extracted for
// that capability (B), each on a fresh database under a temporary directory, in process.
func compareExtracted(ctx context.Context, e env, name string, suite *scenario.Suite, opts scenario.Options) (*scenario.Report, error) {
	dir, err := os.MkdirTemp("", "ficus-compare-")
	if err != nil {
		return nil, fmt.Errorf("making a directory for the databases: %w", err)
	}
	defer os.RemoveAll(dir)
	// The components log only with FICUS_LOG=debug: the scenarios provoke errors on purpose.
	var logger *slog.Logger
	if e.getenv("FICUS_LOG") == "debug" {
		logger = newLogger(e.stderr, e.getenv).With("suite", name)
	}
	var cleanups []func()
	defer func() {
		for _, c := range slices.Backward(cleanups) {
			c()
		}
	}()

	mono, err := monolith.New(ctx, &config.Config{Monolith: config.Monolith{Database: "sqlite:" + filepath.Join(dir, "monolith.db")}}, logger)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { _ = mono.Close() })
	aURL, stop, err := serveLoopback(mono.Handler())
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, stop)
	a := scenario.Target{Name: "monolith", URL: aURL}

	var b scenario.Target
	switch name {
	case "inventory":
		srv, err := inventory.Open(ctx, "sqlite:"+filepath.Join(dir, "inventory.db"), inventory.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, func() { _ = srv.Close() })
		bURL, stop, err := serveLoopback(srv.Handler())
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, stop)
		b = scenario.Target{Name: "inventory service", URL: bURL}
	case "payments":
		var stop func()
		b, stop, err = paymentsSide(ctx, dir, logger, func(err error) { fmt.Fprintln(e.stderr, "ficus compare:", err) })
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, stop)
	default:
		return nil, fmt.Errorf("no extracted service for suite %s", name)
	}
	return scenario.Run(ctx, suite, a, b, opts)
}

// paymentsSide starts the payments service with what it needs to be compared: an embedded
// bus, a monolith that takes the setup steps (customers), whose outbox relay publishes their
// events, and the service's customer copy following them. Its CaughtUp returns once the
// setup monolith's outbox is drained onto the bus and the copy has applied everything the
// bus holds.
func paymentsSide(ctx context.Context, dir string, logger *slog.Logger, report func(error)) (scenario.Target, func(), error) {
	var cleanups []func()
	stopAll := func() {
		for _, c := range slices.Backward(cleanups) {
			c()
		}
	}
	fail := func(err error) (scenario.Target, func(), error) {
		stopAll()
		return scenario.Target{}, nil, err
	}
	events, stopBus, err := bus.StartEmbedded(ctx, config.Events{Embedded: config.Embedded{
		Listen: "127.0.0.1:0", Store: filepath.Join(dir, "nats")}}, nil, logger)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, stopBus)
	b, err := bus.Connect(ctx, events, bus.Options{Name: "ficus-compare"})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, b.Close)

	setup, err := monolith.New(ctx, &config.Config{Monolith: config.Monolith{Database: "sqlite:" + filepath.Join(dir, "setup.db")}}, logger)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = setup.Close() })
	setupURL, stop, err := serveLoopback(setup.Handler())
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, stop)
	relay := outbox.NewRelay(setup.DB, b, outbox.RelayOptions{Name: "setup", Logger: logger})
	store.OnCommit(setup.DB, relay.Notify)
	cleanups = append(cleanups, background(ctx, "the setup monolith's outbox relay", relay.Run, report))

	srv, err := payments.Open(ctx, "sqlite:"+filepath.Join(dir, "payments.db"), payments.Options{Logger: logger})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = srv.Close() })
	cleanups = append(cleanups, background(ctx, "the customer copy", func(ctx context.Context) error { return srv.FollowCustomers(ctx, b) }, report))
	svcURL, stop, err := serveLoopback(srv.Handler())
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, stop)

	caughtUp := func(ctx context.Context) error {
		return poll(ctx, func(ctx context.Context) (bool, string) {
			n, _, err := outbox.Backlog(ctx, setup.DB)
			switch {
			case err != nil:
				return false, err.Error()
			case n > 0:
				return false, fmt.Sprintf("%d customer events not yet on the bus", n)
			}
			st := srv.CustomerCopy(ctx)
			return st.Status == payments.CopyCaughtUp, fmt.Sprintf("the customer copy is %s %s", st.Status, st.Error)
		})
	}
	return scenario.Target{Name: "payments service", URL: svcURL, SetupURL: setupURL, CaughtUp: caughtUp}, stopAll, nil
}

// serveLoopback serves h on a free loopback port with the server every Ficus component runs,
// until stop.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening on loopback: %w", err)
	}
	srv := web.NewServer(h, web.ServerOptions{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); <-served }, nil
}

// background runs fn until the returned stop is called, which waits for it to return. An
// error fn returns before then goes to report: the comparison goes on, and its report shows
// what the failure broke.
func background(ctx context.Context, what string, fn func(context.Context) error, report func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			report(fmt.Errorf("%s stopped: %w", what, err))
		}
	}()
	return func() { cancel(); <-done }
}

// overThreshold says whether a report fails: a failed expectation, or more differing
// answers than the threshold allows.
func overThreshold(rep *scenario.Report, threshold float64) bool {
	return len(rep.Failures) > 0 || rep.FailuresOmitted > 0 || rep.DiffRate() > threshold
}

// runReplay replays recorded traffic against -a and -b and reports as the suites do.
func runReplay(ctx context.Context, e env, f compareFlags) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	file, err := os.Open(f.traffic)
	if err != nil {
		return fmt.Errorf("reading traffic: %w", err)
	}
	defer file.Close()
	var size int64
	if fi, err := file.Stat(); err == nil {
		size = fi.Size()
	}
	v, err := contract.NewValidator()
	if err != nil {
		return err
	}
	counted := &countingReader{r: file}
	bar := newReplayProgress(e.stderr, size)
	rep, stats, err := scenario.Replay(ctx, func(each func(int, scenario.Recorded) error) error {
		return scenario.ReadTraffic(counted, each)
	}, scenario.Target{Name: "A", URL: f.a}, scenario.Target{Name: "B", URL: f.b}, scenario.ReplayOptions{
		Endpoints: v.Operations(), Writes: f.writes, Where: filepath.Base(f.traffic),
		Progress: func(done int) { bar.update(done, counted.n) },
	})
	bar.finish()
	if err != nil {
		return err
	}
	if err := rep.WriteText(e.stdout); err != nil {
		return err
	}
	if stats.Skipped > 0 {
		fmt.Fprintf(e.stdout, "\n%d unsafe requests skipped (replay them with -writes: they act on both sides)\n", stats.Skipped)
	}
	if f.jsonPath != "" {
		if err := writeReports(f.jsonPath, []*scenario.Report{rep}); err != nil {
			return err
		}
	}
	if overThreshold(rep, f.threshold) {
		fmt.Fprintf(e.stderr, "ficus compare: FAILED: %.2f%% of the answers differ (threshold %.2f%%), %d failed requests\n",
			100*rep.DiffRate(), 100*f.threshold, len(rep.Failures)+rep.FailuresOmitted)
		return exitError{1}
	}
	fmt.Fprintf(e.stdout, "ficus compare: passed: %.2f%% of the answers differ (threshold %.2f%%)\n", 100*rep.DiffRate(), 100*f.threshold)
	return nil
}

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// replayProgress shows how far a replay is through its file: a bar on a terminal, a line
// every five seconds otherwise.
type replayProgress struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	last time.Time
}

func newReplayProgress(w io.Writer, size int64) *replayProgress {
	p := &replayProgress{w: w, last: time.Now()}
	if isTerminal(w) && size > 0 {
		p.bar = progressbar.NewOptions64(size, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("  replaying"),
			progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true), progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
	}
	return p
}

func (p *replayProgress) update(done int, read int64) {
	if p.bar != nil {
		_ = p.bar.Set64(read)
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "  replayed %s requests\n", grouped(int64(done)))
	}
}

func (p *replayProgress) finish() {
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Finish()
	}
}
