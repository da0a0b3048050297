package gate

import (
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func TestMannWhitneyKnownValues(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5}
	b := []float64{6, 7, 8, 9, 10}
	u, p := MannWhitney(a, b)
	// scipy.stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic"): U=25, p=0.00609
	if u != 25 || math.Abs(p-0.00609) > 0.0001 {
		t.Errorf("U=%g p=%g, want 25 and 0.00609", u, p)
	}
	if _, p := MannWhitney(b, a); p < 0.99 {
		t.Errorf("the other way round p=%g, want near 1", p)
	}
	// Ties: identical samples give no evidence.
	same := []float64{1, 1, 1, 2, 2, 2}
	if _, p := MannWhitney(same, same); p < 0.5 {
		t.Errorf("identical samples: p=%g", p)
	}
	if _, p := MannWhitney([]float64{1}, b); p != 1 {
		t.Errorf("one value: p=%g, want 1", p)
	}
}

func TestHodgesLehmannAndQuantile(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5}
	b := []float64{3, 4, 5, 6, 7}
	if got := HodgesLehmann(a, b); got != 2 {
		t.Errorf("shift = %g, want 2", got)
	}
	v := []float64{5, 1, 4, 2, 3}
	if Quantile(v, 0.5) != 3 || Quantile(v, 0.99) != 5 || Quantile(v, 0) != 1 || v[0] != 5 {
		t.Errorf("quantiles of %v wrong, or v reordered", v)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestWindowSlides(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := NewWindow(10*time.Second, clk.now)
	for i := range 10 {
		w.Observe(i < 3, time.Duration(i)*time.Millisecond)
	}
	s := w.Snapshot()
	if s.N != 10 || s.Bad != 3 || len(s.Latencies) != 10 || s.Rate() != 0.3 {
		t.Fatalf("snapshot %+v", s)
	}
	clk.add(5 * time.Second)
	w.Observe(false, -1)
	if s := w.Snapshot(); s.N != 11 || len(s.Latencies) != 10 {
		t.Fatalf("after 5s: %+v", s)
	}
	clk.add(6 * time.Second) // the first outcomes are now older than the window
	if s := w.Snapshot(); s.N != 1 || s.Bad != 0 {
		t.Fatalf("after 11s: %+v, want only the outcome of 6s ago", s)
	}
	for range 5000 {
		w.Observe(false, time.Millisecond)
	}
	if s := w.Snapshot(); len(s.Latencies) > windowBuckets*keptPerBucket {
		t.Fatalf("kept %d latencies", len(s.Latencies))
	}
}

func gates() config.Gates {
	f := func(v float64) *float64 { return &v }
	return config.Gates{MinSamples: 100, MaxDiffRate: f(0.01), MaxErrorRate: f(0.01), MaxErrorIncrease: f(0.01),
		MaxSlowdown: f(0.2), Alpha: 0.05, MaxP99: config.Duration(50 * time.Millisecond)}
}

func latencies(rng *rand.Rand, n int, base time.Duration) []float64 {
	out := make([]float64, n)
	for i := range out {
		// Long-tailed, like real latencies: base plus an exponential tail.
		out[i] = (base + time.Duration(rng.ExpFloat64()*float64(base)/4)).Seconds()
	}
	return out
}

func TestEvaluateNamesTheFailingGate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	good := Input{
		Primary:   Side{N: 1000, Bad: 2, Latencies: latencies(rng, 500, 10*time.Millisecond)},
		Candidate: Side{N: 1000, Bad: 3, Latencies: latencies(rng, 500, 10*time.Millisecond)},
		Compared:  &Side{N: 1000, Bad: 5},
	}
	if failed := Failed(Evaluate(gates(), good)); len(failed) != 0 {
		t.Fatalf("healthy candidate failed %+v", failed)
	}
	cases := []struct {
		name  string
		edit  func(in *Input)
		gate  string
		words string
	}{
		{"diffs", func(in *Input) { in.Compared = &Side{N: 200, Bad: 7} }, DiffRate, "7 of 200 compared pairs differ (3.50%)"},
		{"too few", func(in *Input) { in.Compared = &Side{N: 50} }, DiffRate, "50 compared pairs, fewer than min_samples 100"},
		{"errors", func(in *Input) { in.Candidate.Bad = 40 }, ErrorRate, "40 of 1000 candidate answers are errors (4.00%)"},
		{"slower", func(in *Input) { in.Candidate.Latencies = latencies(rng, 500, 15*time.Millisecond) }, Latency, "significant"},
		{"p99", func(in *Input) {
			in.Candidate.Latencies = append(latencies(rng, 400, 10*time.Millisecond), latencies(rng, 100, 80*time.Millisecond)...)
		}, P99, "candidate p99"},
	}
	for _, c := range cases {
		in := good
		in.Candidate.Latencies = good.Candidate.Latencies
		c.edit(&in)
		var found *Result
		for _, r := range Failed(Evaluate(gates(), in)) {
			if r.Gate == c.gate {
				found = &r
			}
		}
		if found == nil {
			t.Errorf("%s: gate %s did not fail: %+v", c.name, c.gate, Evaluate(gates(), in))
			continue
		}
		if !strings.Contains(found.Detail, c.words) {
			t.Errorf("%s: detail %q lacks %q", c.name, found.Detail, c.words)
		}
	}
}

// TestLatencyGateIgnoresATinySignificantShift: with many samples, a shift of 2% is
// significant but within max_slowdown; the gate holds.
func TestLatencyGateIgnoresATinySignificantShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	prim := latencies(rng, 2000, 10*time.Millisecond)
	cand := make([]float64, len(prim))
	for i, v := range latencies(rng, 2000, 10*time.Millisecond) {
		cand[i] = v * 1.02
	}
	r := latencyGate(gates(), Side{Latencies: prim}, Side{Latencies: cand}, 100)
	if !r.OK {
		t.Errorf("a 2%% shift failed the gate: %s", r.Detail)
	}
}
