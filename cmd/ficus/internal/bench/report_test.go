package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n\n" + SectionBegin + "\nold table\nold line\n" + SectionEnd + "\n\n## Facade\nprose\n"
	got, err := ReplaceSection([]byte(doc), "\n| new | table |\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nintro\n\n" + SectionBegin + "\n| new | table |\n" + SectionEnd + "\n\n## Facade\nprose\n"
	if string(got) != want {
		t.Fatalf("ReplaceSection =\n%s\nwant\n%s", got, want)
	}
	// Replacing again gives the same document: make bench can run any number of times.
	again, err := ReplaceSection(got, "| new | table |")
	if err != nil || string(again) != want {
		t.Fatalf("second ReplaceSection = %q, %v", again, err)
	}
	for name, bad := range map[string]string{
		"no markers":    "# Benchmarks\n",
		"no end":        SectionBegin + "\nx\n",
		"no begin":      "x\n" + SectionEnd,
		"twice":         SectionBegin + SectionEnd + SectionBegin + SectionEnd,
		"out of order":  SectionEnd + "\nx\n" + SectionBegin,
		"begin in text": SectionBegin + "\n" + SectionBegin + "\n" + SectionEnd,
	} {
		if out, err := ReplaceSection([]byte(bad), "t"); err == nil {
			t.Errorf("%s: ReplaceSection = %q, want an error", name, out)
		}
	}
}

func TestWriteReport(t *testing.T) {
	m := Machine{CPU: "AMD EPYC 7B13", Cores: 2, OS: "linux/amd64, Linux 6.18", Go: "go1.26.8",
		Date: time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC), LoadAvg: "3.50 2.00 1.00"}
	rows := []Row{
		{Bench: "facade", Case: "facade, 16 conns", Figure: "req/s", Value: 10672.4, Baseline: "stock Go proxy, 16 conns", Base: 5889},
		{Bench: "facade", Case: "facade, 16 conns", Figure: "req/s", Baseline: "nginx, 16 conns", Note: "nginx: not installed"},
		{Bench: "orders", Case: "a|b", Figure: "p99 ms", Value: 7.256, Baseline: "in process", Base: 0},
	}
	var b strings.Builder
	WriteReport(&b, m, rows)
	out := b.String()
	for _, want := range []string{
		"Measured 2026-12-06 10:30 UTC on AMD EPYC 7B13, 2 cores, linux/amd64, Linux 6.18, go1.26.8. Load average at the start: 3.50 2.00 1.00 (the machine was busy",
		"| facade | facade, 16 conns | req/s | 10672 | stock Go proxy, 16 conns | 5889 | 1.81 |\n",
		"| facade | facade, 16 conns | req/s | — | nginx, 16 conns | — | nginx: not installed |\n",
		"| orders | a\\|b | p99 ms | 7.26 | in process | 0.00 | — |\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "| benchmark |"); n != 1 {
		t.Errorf("report has %d tables, want one:\n%s", n, out)
	}
	b.Reset()
	m.LoadAvg = "0.20 0.10 0.05"
	WriteReport(&b, m, rows)
	if strings.Contains(b.String(), "busy") || strings.Contains(b.String(), "at the end") {
		t.Errorf("a quiet machine is called busy, or an end load not taken is shown:\n%s", b.String())
	}
	b.Reset()
	m.LoadAvgEnd = "9.00 4.00 2.00"
	WriteReport(&b, m, rows)
	// The end load counts the benchmarks' own work: a quiet start is a quiet machine.
	if !strings.Contains(b.String(), "Load average at the start: 0.20 0.10 0.05; at the end: 9.00 4.00 2.00.") || strings.Contains(b.String(), "busy") {
		t.Errorf("a machine quiet at the start is called busy for the benchmarks' own load:\n%s", b.String())
	}
}

func TestMachineParsing(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel(cpuinfo); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor: 0\n"); got != "unknown CPU" {
		t.Errorf("cpuModel without a model = %q", got)
	}
	if got := loadAvg("3.02 2.50 1.75 4/512 12345\n"); got != "3.02 2.50 1.75" {
		t.Errorf("loadAvg = %q", got)
	}
	if got := loadAvg("garbage"); got != "unknown" {
		t.Errorf("loadAvg of garbage = %q", got)
	}
	if m := ThisMachine(time.Now()); m.Cores < 1 || m.Go == "" {
		t.Errorf("ThisMachine = %+v", m)
	}
}

func TestFacadeRows(t *testing.T) {
	results := map[cellKey][]cellResult{
		{"stock", 16}:  {{rps: 5000, cpuUS: 150}, {rps: 6000, cpuUS: 160}, {rps: 7000, cpuUS: 170}},
		{"facade", 16}: {{rps: 12000, cpuUS: 90}, {rps: 9000, cpuUS: 80}, {rps: 10000, cpuUS: 100}},
		{"nginx", 16}:  {{rps: 20000, cpuUS: 30}},
	}
	withNginx := []benchTarget{{name: "direct"}, {name: "stock"}, {name: "facade"}, {name: "nginx"}}
	rows := facadeRows(withNginx, []int{16}, results, "")
	if len(rows) != 4 {
		t.Fatalf("rows = %+v, want 4", rows)
	}
	// Medians of the rounds: facade 10,000 req/s against the stock proxy's 6,000.
	if r := rows[0]; r.Value != 10000 || r.Base != 6000 || r.Baseline != "stock Go proxy, 16 conns" {
		t.Errorf("facade vs stock = %+v", r)
	}
	if r := rows[2]; r.Value != 10000 || r.Base != 20000 || r.Baseline != "nginx, 16 conns" {
		t.Errorf("facade vs nginx = %+v", r)
	}
	rows = facadeRows(withNginx[:3], []int{16}, results, "nginx: not installed; its column is left out (apt-get install nginx-light)")
	if len(rows) != 3 || rows[2].Note != "nginx: not installed" || rows[2].Baseline != "nginx, 16 conns" {
		t.Fatalf("rows without nginx = %+v", rows)
	}
}

func TestShadowRows(t *testing.T) {
	targets := []benchTarget{{name: "shadow off"}, {name: "shadow on"}, {name: "shadow on, slow"}}
	sat := map[cellKey][]cellResult{
		{"shadow off", 32}: {{rps: 10000, cpuUS: 60}}, {"shadow on", 32}: {{rps: 8000, cpuUS: 100}}, {"shadow on, slow", 32}: {{rps: 9900, cpuUS: 61}},
	}
	fixed := map[cellKey][]cellResult{
		{"shadow off", 2500}: {{p99: 2 * time.Millisecond, cpuUS: 130}}, {"shadow on", 2500}: {{p99: 4 * time.Millisecond, cpuUS: 160}},
		{"shadow on, slow", 2500}: {{p99: 3 * time.Millisecond, cpuUS: 131}},
	}
	rows := shadowRows(targets, 32, sat, 2500, fixed)
	if len(rows) != 8 {
		t.Fatalf("rows = %+v, want 8", rows)
	}
	if r := rows[2]; r.Case != "shadow on, candidate healthy, at 2500 req/s" || r.Figure != "client p99 ms" || r.Value != 4 || r.Base != 2 {
		t.Errorf("healthy p99 row = %+v", r)
	}
	if r := rows[4]; r.Case != "shadow on, candidate slow, saturated (32 conns)" || r.Value != 9900 || r.Base != 10000 {
		t.Errorf("slow saturated row = %+v", r)
	}
}

func TestOrdersRows(t *testing.T) {
	lat := []time.Duration{time.Millisecond, 2 * time.Millisecond}
	results := []ordersResult{
		{engine: "sqlite", path: "in process", done: 1000, elapsed: time.Second, lat: lat, cpu: 600 * time.Millisecond},
		{engine: "sqlite", path: "HTTP", done: 1000, elapsed: 2 * time.Second, lat: lat, cpu: 900 * time.Millisecond},
		{engine: "sqlite", path: pathRemote, done: 1000, elapsed: 4 * time.Second, lat: lat, cpu: 2 * time.Second},
		{engine: "postgres", path: "in process", err: errors.New("connecting: refused\nmore")},
	}
	rows := ordersRows(results)
	if len(rows) != 7 {
		t.Fatalf("rows = %+v, want 3 local, 3 remote, 1 failed", rows)
	}
	if r := rows[0]; r.Case != "HTTP, local (sqlite)" || r.Value != 500 || r.Base != 1000 || r.Baseline != "in process (sqlite)" {
		t.Errorf("local row = %+v", r)
	}
	if r := rows[3]; r.Case != "HTTP, remote: saga (sqlite)" || r.Value != 250 || r.Base != 500 || r.Baseline != "HTTP, local (sqlite)" {
		t.Errorf("remote row = %+v", r)
	}
	if r := rows[5]; r.Figure != "CPU µs/order" || r.Value != 2000 || r.Base != 900 {
		t.Errorf("remote CPU row = %+v", r)
	}
	if r := rows[6]; r.Case != "HTTP, local (postgres)" || r.Note != "failed: connecting: refused" {
		t.Errorf("failed engine row = %+v", r)
	}
}

func TestMigrateAndEventsRows(t *testing.T) {
	res := []MigrateResult{
		{What: "monolith reads (baseline)", Rows: 1000, Elapsed: 10 * time.Millisecond, CPU: 10 * time.Millisecond},
		{What: "backfill", Rows: 1000, Elapsed: 20 * time.Millisecond, CPU: 15 * time.Millisecond},
	}
	rows := migrateRows(res)
	if len(rows) != 2 || rows[0].Value != 50000 || rows[0].Base != 100000 || rows[1].Value != 15 || rows[1].Base != 10 {
		t.Errorf("migrate rows = %+v", rows)
	}
	if migrateRows(nil) != nil {
		t.Error("rows from no results")
	}
	ev := eventsRows("nats", EventsResult{Throughput: 5000, CPUPerEvent: 220 * time.Microsecond}, EventsResult{Throughput: 20000, CPUPerEvent: 84 * time.Microsecond})
	if len(ev) != 2 || ev[0].Case != "end to end (nats)" || ev[0].Base != 20000 || ev[1].Value != 220 {
		t.Errorf("events rows = %+v", ev)
	}
}

// TestReportRowsForWhatCannotRun: a bus ficus bench events does not know gets its row
// saying so, without running anything, and an unknown benchmark is refused.
func TestReportRowsForWhatCannotRun(t *testing.T) {
	rows, err := Report(context.Background(), ReportOptions{Self: "/nonexistent", Only: []string{ReportEvents}, Buses: []string{"pulsar"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Note != "skipped: ficus bench events knows nats and kafka" {
		t.Fatalf("rows = %+v", rows)
	}
	if _, err := Report(context.Background(), ReportOptions{Self: "x", Only: []string{"nginx"}}); !errors.Is(err, ErrReportOptions) {
		t.Fatalf("Report with an unknown benchmark = %v", err)
	}
}
