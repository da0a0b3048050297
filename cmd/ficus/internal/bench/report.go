package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Row is one line of the load report: a figure of one case, next to the same figure of its
// baseline measured in the same run. A row with a Note was not measured, and the note says
// why ("nginx: not installed", "skipped: no server").
type Row struct {
	// Bench is the benchmark: facade, orders, events, backfill or shadow.
	Bench string
	// Case is what was measured: "facade, 16 conns".
	Case string
	// Figure names the figure and its unit: "req/s", "CPU µs/req", "p99 ms".
	Figure string
	// Value is the case's figure, Base the baseline's.
	Value, Base float64
	// Baseline names what Base was measured on: "stock proxy, 16 conns".
	Baseline string
	// Note, when set, replaces the figures.
	Note string
}

// Ratio is Value over Base; false when there is no baseline figure to divide by.
func (r Row) Ratio() (float64, bool) {
	if r.Note != "" || r.Base == 0 {
		return 0, false
	}
	return r.Value / r.Base, true
}

// Report sections: the markers around the report in docs/bench.md, replaced in place.
const (
	SectionBegin = "<!-- bench:begin -->"
	SectionEnd   = "<!-- bench:end -->"
)

// Machine is what the report says about where it ran.
type Machine struct {
	CPU     string // model name
	Cores   int
	OS      string // GOOS/GOARCH and kernel release
	Go      string
	Date    time.Time
	LoadAvg string // 1, 5 and 15 minutes, at the start of the run
	// LoadAvgEnd is the load average at the end of the run; empty when not taken.
	LoadAvgEnd string
}

// ThisMachine describes the machine the process runs on, at now.
func ThisMachine(now time.Time) Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Date: now.UTC(), LoadAvg: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", Linux " + strings.TrimSpace(string(b))
	}
	m.LoadAvg = LoadAverage()
	return m
}

// LoadAverage is the machine's load average over 1, 5 and 15 minutes, or "unknown".
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return loadAvg(string(b))
}

// cpuModel returns the first "model name" of /proc/cpuinfo's text.
func cpuModel(cpuinfo string) string {
	for line := range strings.Lines(cpuinfo) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown CPU"
}

// loadAvg returns the three load averages of /proc/loadavg's text.
func loadAvg(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// WriteReport writes the one table of the load report, as Markdown, under a line saying
// where and when it ran.
func WriteReport(w io.Writer, m Machine, rows []Row) {
	fmt.Fprintf(w, "Measured %s on %s, %d cores, %s, %s. Load average at the start: %s",
		m.Date.Format("2006-01-02 15:04 MST"), m.CPU, m.Cores, m.OS, m.Go, m.LoadAvg)
	if m.LoadAvgEnd != "" {
		fmt.Fprintf(w, "; at the end: %s", m.LoadAvgEnd)
	}
	// The load at the end counts the benchmarks' own work: only the start says whether
	// something else was running.
	if busy(m.LoadAvg, m.Cores) {
		fmt.Fprint(w, " (the machine was busy with other work: read the ratios, which share the noise, rather than the absolute figures)")
	}
	fmt.Fprint(w, ".\n\n")
	fmt.Fprintln(w, "| benchmark | case | figure | value | baseline (same run) | baseline value | × baseline |")
	fmt.Fprintln(w, "| --- | --- | --- | ---: | --- | ---: | ---: |")
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(w, "| %s | %s | %s | — | %s | — | %s |\n", cell(r.Bench), cell(r.Case), cell(r.Figure), cell(r.Baseline), cell(r.Note))
			continue
		}
		ratio := "—"
		if x, ok := r.Ratio(); ok {
			ratio = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Bench), cell(r.Case), cell(r.Figure), figure(r.Value), cell(r.Baseline), figure(r.Base), ratio)
	}
}

// busy reports whether a load average (its 1-minute figure) is above half the cores: other
// work then shares the CPUs with the benchmark.
func busy(load string, cores int) bool {
	var one float64
	if _, err := fmt.Sscanf(load, "%g", &one); err != nil {
		return false
	}
	return one > float64(cores)/2
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// figure formats a figure to about three significant digits, without exponents.
func figure(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ReplaceSection returns doc with the text between SectionBegin and SectionEnd replaced by
// section. Both markers must be there, once each and in that order, so that a document
// edited by hand is never half rewritten.
func ReplaceSection(doc []byte, section string) ([]byte, error) {
	b, e := bytes.Count(doc, []byte(SectionBegin)), bytes.Count(doc, []byte(SectionEnd))
	if b != 1 || e != 1 {
		return nil, fmt.Errorf("want %s and %s once each, found %d and %d", SectionBegin, SectionEnd, b, e)
	}
	i := bytes.Index(doc, []byte(SectionBegin)) + len(SectionBegin)
	j := bytes.Index(doc, []byte(SectionEnd))
	if j < i {
		return nil, fmt.Errorf("%s comes before %s", SectionEnd, SectionBegin)
	}
	out := make([]byte, 0, len(doc)+len(section))
	out = append(out, doc[:i]...)
	out = append(out, '\n')
	out = append(out, strings.TrimSpace(section)...)
	out = append(out, '\n')
	out = append(out, doc[j:]...)
	return out, nil
}

// The benchmarks of the report, in the order it runs them.
const (
	ReportFacade   = "facade"
	ReportOrders   = "orders"
	ReportEvents   = "events"
	ReportBackfill = "backfill"
	ReportShadow   = "shadow"
)

// ReportBenches lists every benchmark of the report.
func ReportBenches() []string {
	return []string{ReportFacade, ReportOrders, ReportEvents, ReportBackfill, ReportShadow}
}

// ReportOptions shape a run of Report. Self is required.
type ReportOptions struct {
	// Self is the ficus binary that runs the processes of the facade and shadow benchmarks.
	Self string
	// Only are the benchmarks to run, from ReportBenches. Default: all of them.
	Only []string
	// Postgres is a PostgreSQL URL for the orders rows on PostgreSQL. Empty: those rows say
	// "skipped: no server".
	Postgres string
	// Buses are the event buses to measure, a row each. Default: nats (the embedded
	// JetStream server).
	Buses []string
	// Duration is the load time of each cell of the facade and shadow benchmarks. Default 3s.
	Duration time.Duration
	// Rounds of the facade and shadow benchmarks; each figure is the median. Default 3.
	Rounds int
	// Orders per measurement of the orders benchmark. Default 3,000.
	Orders int
	// Events per run of the events benchmark. Default 10,000.
	Events int
	// Rows in the monolith for the backfill benchmark. Default 200,000.
	Rows int
	// Tool is the load generator of the facade and shadow benchmarks (see FacadeOptions).
	Tool string
	// Detail receives each benchmark's own tables and notes, as its command prints them.
	// Default: discarded.
	Detail io.Writer
}

func (o *ReportOptions) setDefaults() {
	if len(o.Only) == 0 {
		o.Only = ReportBenches()
	}
	if len(o.Buses) == 0 {
		o.Buses = []string{"nats"}
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Orders == 0 {
		o.Orders = 3000
	}
	if o.Events == 0 {
		o.Events = 10000
	}
	if o.Rows == 0 {
		o.Rows = 200_000
	}
	if o.Detail == nil {
		o.Detail = io.Discard
	}
}

// ErrReportOptions wraps every mistake in ReportOptions.
var ErrReportOptions = errors.New("bench report")

// Report runs the chosen benchmarks one after the other and returns the report's rows, each
// figure with its baseline of the same run. A benchmark that fails gets a row saying so and
// the others still run; Report then returns the rows and the failures.
func Report(ctx context.Context, opts ReportOptions) ([]Row, error) {
	opts.setDefaults()
	for _, b := range opts.Only {
		if !slices.Contains(ReportBenches(), b) {
			return nil, fmt.Errorf("%w: -only %q: want some of %s", ErrReportOptions, b, strings.Join(ReportBenches(), ", "))
		}
	}
	if opts.Self == "" {
		return nil, fmt.Errorf("%w: ReportOptions.Self is required", ErrReportOptions)
	}
	var rows []Row
	var errs []error
	record := func(r Row) { rows = append(rows, r) }
	for _, b := range ReportBenches() {
		if !slices.Contains(opts.Only, b) {
			continue
		}
		fmt.Fprintf(opts.Detail, "\n== %s ==\n", b)
		n := len(rows)
		var err error
		switch b {
		case ReportFacade:
			err = Facade(ctx, FacadeOptions{Self: opts.Self, Duration: opts.Duration, Rounds: opts.Rounds, Tool: opts.Tool, Record: record}, opts.Detail, opts.Detail)
		case ReportOrders:
			err = reportOrders(ctx, opts, record)
		case ReportEvents:
			err = reportEvents(ctx, opts, record)
		case ReportBackfill:
			var res []MigrateResult
			res, err = Migrate(ctx, MigrateOptions{Rows: opts.Rows}, opts.Detail)
			for _, r := range migrateRows(res) {
				record(r)
			}
		case ReportShadow:
			err = Shadow(ctx, ShadowOptions{Self: opts.Self, Duration: opts.Duration, Rounds: opts.Rounds, Tool: opts.Tool, Record: record}, opts.Detail, opts.Detail)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
			if len(rows) == n { // nothing measured: the row says why
				rows = append(rows, Row{Bench: b, Case: "—", Figure: "—", Baseline: "—", Note: "failed: " + firstLine(err.Error())})
			}
		}
	}
	return rows, errors.Join(errs...)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// reportOrders measures orders on SQLite (local and remote mode) and on PostgreSQL when
// there is a server, else says the PostgreSQL rows were skipped.
func reportOrders(ctx context.Context, opts ReportOptions, record func(Row)) error {
	dbs := []string{"sqlite"}
	if opts.Postgres != "" {
		dbs = append(dbs, opts.Postgres)
	}
	err := Orders(ctx, OrdersOptions{Orders: opts.Orders, Databases: dbs, Record: record}, opts.Detail)
	if opts.Postgres == "" {
		record(Row{Bench: ReportOrders, Case: "HTTP, local (postgres)", Figure: "orders/s", Baseline: "in process (postgres)",
			Note: "skipped: no server (set FICUS_TEST_POSTGRES, or make bench BENCH_POSTGRES=1)"})
	}
	return err
}

// reportEvents measures the event pipeline on each bus: end to end against the pipeline's
// own drain rate of a backlog.
func reportEvents(ctx context.Context, opts ReportOptions, record func(Row)) error {
	var errs []error
	for _, bus := range opts.Buses {
		if bus != "nats" && bus != "kafka" {
			record(Row{Bench: ReportEvents, Case: "end to end (" + bus + ")", Figure: "events/s", Baseline: "pipeline only (" + bus + ")",
				Note: "skipped: ficus bench events knows nats and kafka"})
			continue
		}
		var res [2]EventsResult
		for i, backlog := range []bool{false, true} {
			dir, err := os.MkdirTemp("", "ficus-bench-events-")
			if err != nil {
				return err
			}
			url, stop, err := benchBus(bus)
			if err == nil {
				res[i], err = Events(ctx, EventsOptions{Dir: dir, Events: opts.Events, Backlog: backlog, Bus: url})
				stop()
			}
			os.RemoveAll(dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", bus, err))
				break
			}
			fmt.Fprintf(opts.Detail, "events %s, backlog %t: %s\n", bus, backlog, res[i])
		}
		if len(errs) == 0 {
			for _, r := range eventsRows(bus, res[0], res[1]) {
				record(r)
			}
		}
	}
	return errors.Join(errs...)
}

// benchBus returns the events.bus URL a run of Events on bus uses, fresh for each run, and
// what stops it: "" for nats (Events runs an embedded server of its own), a 3-broker kfake
// cluster on loopback for kafka. No Kafka broker can run here, so franz-go's in-process
// Kafka-protocol cluster stands in: the row measures ficus's Kafka driver (idempotent
// producer, consumer group, offsets committed after the inbox), not a broker's disks.
func benchBus(bus string) (url string, stop func(), err error) {
	if bus != "kafka" {
		return "", func() {}, nil
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(0, 0, 0))
	if err != nil {
		return "", nil, fmt.Errorf("starting kfake: %w", err)
	}
	return "kafka://" + strings.Join(c.ListenAddrs(), ","), c.Close, nil
}

// eventsRows compares events end to end with the pipeline draining a backlog, on one bus.
func eventsRows(bus string, e2e, backlog EventsResult) []Row {
	c, base := "end to end ("+bus+")", "pipeline only, backlog ("+bus+")"
	return []Row{
		{Bench: ReportEvents, Case: c, Figure: "events/s", Value: e2e.Throughput, Baseline: base, Base: backlog.Throughput},
		{Bench: ReportEvents, Case: c, Figure: "CPU µs/event", Value: us(e2e.CPUPerEvent), Baseline: base, Base: us(backlog.CPUPerEvent)},
	}
}

// migrateRows compares backfill and verify with the monolith's own read of the same rows.
func migrateRows(res []MigrateResult) []Row {
	if len(res) == 0 {
		return nil
	}
	base := res[0]
	var rows []Row
	for _, r := range res[1:] {
		rows = append(rows,
			Row{Bench: ReportBackfill, Case: r.What + " (sqlite → sqlite)", Figure: "rows/s", Value: r.PerSecond(), Baseline: base.What, Base: base.PerSecond()},
			Row{Bench: ReportBackfill, Case: r.What + " (sqlite → sqlite)", Figure: "CPU µs/row", Value: perRow(r), Baseline: base.What, Base: perRow(base)})
	}
	return rows
}

func perRow(r MigrateResult) float64 {
	return float64(r.CPU.Microseconds()) / float64(max(r.Rows, 1))
}

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// facadeRows compares the facade with the stock proxy and nginx at each connection count:
// req/s and the proxy process's CPU per request.
func facadeRows(targets []benchTarget, conns []int, results map[cellKey][]cellResult, nginxNote string) []Row {
	hasNginx := slices.ContainsFunc(targets, func(t benchTarget) bool { return t.name == "nginx" })
	var rows []Row
	for _, c := range conns {
		fac, stock, ngx := medianCell(results[cellKey{"facade", c}]), medianCell(results[cellKey{"stock", c}]), medianCell(results[cellKey{"nginx", c}])
		cs := fmt.Sprintf("facade, %d conns", c)
		stockName, nginxName := fmt.Sprintf("stock Go proxy, %d conns", c), fmt.Sprintf("nginx, %d conns", c)
		rows = append(rows,
			Row{Bench: ReportFacade, Case: cs, Figure: "req/s", Value: fac.rps, Baseline: stockName, Base: stock.rps},
			Row{Bench: ReportFacade, Case: cs, Figure: "CPU µs/req", Value: fac.cpuUS, Baseline: stockName, Base: stock.cpuUS})
		if !hasNginx {
			note, _, _ := strings.Cut(nginxNote, ";") // the reason, without the advice
			if note == "" {
				note = "nginx: not installed"
			}
			rows = append(rows, Row{Bench: ReportFacade, Case: cs, Figure: "req/s", Baseline: nginxName, Note: note})
			continue
		}
		rows = append(rows,
			Row{Bench: ReportFacade, Case: cs, Figure: "req/s", Value: fac.rps, Baseline: nginxName, Base: ngx.rps},
			Row{Bench: ReportFacade, Case: cs, Figure: "CPU µs/req", Value: fac.cpuUS, Baseline: nginxName, Base: ngx.cpuUS})
	}
	return rows
}

// shadowRows compares the facades that shadow with the one that does not: at saturation
// (req/s, CPU per request) and at a fixed rate (the client's p99, CPU per request).
func shadowRows(targets []benchTarget, conns int, saturated map[cellKey][]cellResult, rate int, fixed map[cellKey][]cellResult) []Row {
	var rows []Row
	offSat, offFix := medianCell(saturated[cellKey{"shadow off", conns}]), medianCell(fixed[cellKey{"shadow off", rate}])
	for _, t := range targets {
		if t.name == "shadow off" {
			continue
		}
		sat, fix := medianCell(saturated[cellKey{t.name, conns}]), medianCell(fixed[cellKey{t.name, rate}])
		name := strings.Replace(t.name, "shadow on", "shadow on, candidate healthy", 1)
		if t.name == "shadow on, slow" {
			name = "shadow on, candidate slow"
		}
		satCase, fixCase := fmt.Sprintf("%s, saturated (%d conns)", name, conns), fmt.Sprintf("%s, at %d req/s", name, rate)
		rows = append(rows,
			Row{Bench: ReportShadow, Case: satCase, Figure: "req/s", Value: sat.rps, Baseline: "shadow off", Base: offSat.rps},
			Row{Bench: ReportShadow, Case: satCase, Figure: "CPU µs/req", Value: sat.cpuUS, Baseline: "shadow off", Base: offSat.cpuUS},
			Row{Bench: ReportShadow, Case: fixCase, Figure: "client p99 ms", Value: ms(fix.p99), Baseline: "shadow off", Base: ms(offFix.p99)},
			Row{Bench: ReportShadow, Case: fixCase, Figure: "CPU µs/req", Value: fix.cpuUS, Baseline: "shadow off", Base: offFix.cpuUS})
	}
	return rows
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ordersRows compares, per engine, orders over HTTP with the same orders in process, and
// remote mode (the saga) with local mode over HTTP.
func ordersRows(results []ordersResult) []Row {
	var rows []Row
	find := func(engine, path string) *ordersResult {
		for i := range results {
			if results[i].engine == engine && results[i].path == path {
				return &results[i]
			}
		}
		return nil
	}
	pair := func(r, base *ordersResult, caseName, baseName string) {
		switch {
		case r == nil:
			return
		case r.err != nil || base == nil || base.err != nil:
			err := r.err
			if err == nil && base != nil {
				err = base.err
			}
			note := "failed"
			if err != nil {
				note = "failed: " + firstLine(err.Error())
			}
			rows = append(rows, Row{Bench: ReportOrders, Case: caseName, Figure: "orders/s", Baseline: baseName, Note: note})
			return
		}
		rows = append(rows,
			Row{Bench: ReportOrders, Case: caseName, Figure: "orders/s", Value: r.perSecond(), Baseline: baseName, Base: base.perSecond()},
			Row{Bench: ReportOrders, Case: caseName, Figure: "p99 ms", Value: ms(r.pct(0.99)), Baseline: baseName, Base: ms(base.pct(0.99))},
			Row{Bench: ReportOrders, Case: caseName, Figure: "CPU µs/order", Value: us(r.cpuPerOrder()), Baseline: baseName, Base: us(base.cpuPerOrder())})
	}
	var engines []string
	for _, r := range results {
		if !slices.Contains(engines, r.engine) {
			engines = append(engines, r.engine)
		}
	}
	for _, e := range engines {
		in, http := find(e, "in process"), find(e, "HTTP")
		if http == nil && in != nil && in.err != nil {
			http = in // the engine failed before its HTTP run: report it on the HTTP row
		}
		pair(http, in, "HTTP, local ("+e+")", "in process ("+e+")")
		pair(find(e, pathRemote), http, "HTTP, remote: saga ("+e+")", "HTTP, local ("+e+")")
	}
	return rows
}
