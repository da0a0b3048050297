package gate

import (
	"fmt"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

// Gate names.
const (
	DiffRate      = "diff_rate"
	ErrorRate     = "error_rate"
	ErrorIncrease = "error_increase"
	P99           = "p99"
	Latency       = "latency"
)

// Input is what the gates judge: the two sides of one route over the gates' window.
type Input struct {
	// Primary and Candidate are each side's outcomes: Bad counts errors (5xx, or no answer).
	Primary, Candidate Side
	// Compared counts the shadow's compared pairs, Bad the ones that really differed
	// (lag-explained ones not counted); nil when the route has no shadow.
	Compared *Side
}

// Result is one gate's verdict, with the figures it was reached on.
type Result struct {
	// Gate is the gate's name (DiffRate, ErrorRate, ErrorIncrease, P99, Latency).
	Gate string `json:"gate"`
	OK   bool   `json:"ok"`
	// Value is the measured figure and Limit the bound it is held to, in the gate's unit: a
	// rate (0 to 1), or seconds.
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Samples is how many outcomes the figure rests on.
	Samples int64 `json:"samples"`
	// Detail says it in words, figures included.
	Detail string `json:"detail"`
}

// Evaluate judges in by g. Every gate is judged and reported, whether or not another failed.
func Evaluate(g config.Gates, in Input) []Result {
	var out []Result
	minN := int64(g.MinSamples)
	if in.Compared != nil {
		c := *in.Compared
		r := Result{Gate: DiffRate, Value: c.Rate(), Limit: deref(g.MaxDiffRate, config.DefaultMaxDiffRate), Samples: c.N}
		switch {
		case c.N < minN:
			r.Detail = fmt.Sprintf("%d compared pairs, fewer than min_samples %d", c.N, minN)
		default:
			r.OK = r.Value <= r.Limit
			r.Detail = fmt.Sprintf("%d of %d compared pairs differ (%s), limit %s", c.Bad, c.N, pct(r.Value), pct(r.Limit))
		}
		out = append(out, r)
	}
	out = append(out, errorGates(g, in)...)
	cand, prim := in.Candidate, in.Primary
	if g.MaxP99 > 0 {
		r := Result{Gate: P99, Limit: g.MaxP99.D().Seconds(), Samples: int64(len(cand.Latencies))}
		if len(cand.Latencies) == 0 {
			r.Detail = "no candidate latencies yet"
		} else {
			r.Value = Quantile(cand.Latencies, 0.99)
			r.OK = r.Value <= r.Limit
			r.Detail = fmt.Sprintf("candidate p99 %s, limit %s", secs(r.Value), secs(r.Limit))
		}
		out = append(out, r)
	}
	out = append(out, latencyGate(g, prim, cand, minN))
	return out
}

// Errors judges only the error gates (error_rate, error_increase) and, when compared is not
// nil, the diff gate: what the facade watches to roll a canary back, cheaply.
func Errors(g config.Gates, in Input) []Result {
	in.Primary.Latencies, in.Candidate.Latencies = nil, nil
	var out []Result
	for _, r := range Evaluate(config.Gates{MinSamples: g.MinSamples, MaxDiffRate: g.MaxDiffRate,
		MaxErrorRate: g.MaxErrorRate, MaxErrorIncrease: g.MaxErrorIncrease}, in) {
		if r.Gate != Latency {
			out = append(out, r)
		}
	}
	return out
}

func errorGates(g config.Gates, in Input) []Result {
	minN := int64(g.MinSamples)
	cand, prim := in.Candidate, in.Primary
	rate := Result{Gate: ErrorRate, Value: cand.Rate(), Limit: deref(g.MaxErrorRate, config.DefaultMaxErrorRate), Samples: cand.N}
	inc := Result{Gate: ErrorIncrease, Value: cand.Rate() - prim.Rate(), Limit: deref(g.MaxErrorIncrease, config.DefaultMaxErrorIncrease), Samples: cand.N}
	if cand.N < minN {
		rate.Detail = fmt.Sprintf("%d candidate answers, fewer than min_samples %d", cand.N, minN)
		inc.Detail = rate.Detail
		return []Result{rate, inc}
	}
	rate.OK = rate.Value <= rate.Limit
	rate.Detail = fmt.Sprintf("%d of %d candidate answers are errors (%s), limit %s", cand.Bad, cand.N, pct(rate.Value), pct(rate.Limit))
	inc.OK = inc.Value <= inc.Limit
	inc.Detail = fmt.Sprintf("candidate %s errors against the primary's %s (%d of %d): %+.2f points, limit %+.2f",
		pct(cand.Rate()), pct(prim.Rate()), prim.Bad, prim.N, 100*inc.Value, 100*inc.Limit)
	return []Result{rate, inc}
}

// latencyGate compares the two latency distributions: it fails when the candidate's are
// larger with significance (Mann-Whitney U, one-sided, at g.Alpha) and the shift
// (Hodges-Lehmann) is more than max_slowdown of the primary's median. Both must hold: with
// thousands of samples a test finds a shift of microseconds significant, and without the
// test a shift may be chance.
func latencyGate(g config.Gates, prim, cand Side, minN int64) Result {
	r := Result{Gate: Latency, Limit: deref(g.MaxSlowdown, config.DefaultMaxSlowdown), Samples: int64(len(cand.Latencies))}
	need := min(minN, 20)
	if int64(len(cand.Latencies)) < need || int64(len(prim.Latencies)) < need {
		r.Detail = fmt.Sprintf("%d candidate and %d primary latencies, fewer than %d a side", len(cand.Latencies), len(prim.Latencies), need)
		return r
	}
	_, p := MannWhitney(prim.Latencies, cand.Latencies)
	shift := HodgesLehmann(prim.Latencies, cand.Latencies)
	med := Quantile(prim.Latencies, 0.5)
	if med > 0 {
		r.Value = shift / med
	} else if shift > 0 {
		r.Value = 1
	}
	significant := p < g.Alpha
	r.OK = !significant || r.Value <= r.Limit
	verdict := "not significant"
	if significant {
		verdict = "significant"
	}
	r.Detail = fmt.Sprintf("candidate median %s, primary %s: shift %s (%s of the primary's median, limit %s), Mann-Whitney p=%.3g (%s at %g)",
		secs(Quantile(cand.Latencies, 0.5)), secs(med), signedSecs(shift), pct(r.Value), pct(r.Limit), p, verdict, g.Alpha)
	return r
}

// Failed returns the results that failed.
func Failed(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if !r.OK {
			out = append(out, r)
		}
	}
	return out
}

func deref(v *float64, d float64) float64 {
	if v == nil {
		return d
	}
	return *v
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }

func secs(v float64) string {
	return time.Duration(v * float64(time.Second)).Round(10 * time.Microsecond).String()
}

func signedSecs(v float64) string {
	s := secs(v)
	if s == "0s" || s[0] == '-' {
		return s
	}
	return "+" + s
}
