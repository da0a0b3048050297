package gate

import (
	"math"
	"slices"
)

// MannWhitney tests whether the values of b tend to be larger than those of a: it returns
// the U statistic of b, and the one-sided p-value of seeing a U that large if both came from
// one distribution (normal approximation with the tie correction and a continuity
// correction; fine from about 20 values a side). It makes no assumption about the shape of
// the distributions, which suits latencies: skewed, long-tailed, nothing like a bell curve.
// With fewer than two values on a side, p is 1.
func MannWhitney(a, b []float64) (u, p float64) {
	n1, n2 := len(a), len(b)
	if n1 < 2 || n2 < 2 {
		return 0, 1
	}
	type obs struct {
		v     float64
		fromB bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range a {
		all = append(all, obs{v, false})
	}
	for _, v := range b {
		all = append(all, obs{v, true})
	}
	slices.SortFunc(all, func(x, y obs) int {
		switch {
		case x.v < y.v:
			return -1
		case x.v > y.v:
			return 1
		}
		return 0
	})
	n := float64(n1 + n2)
	var rankB, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // ranks i+1 … j, averaged
		for k := i; k < j; k++ {
			if all[k].fromB {
				rankB += rank
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	u = rankB - float64(n2)*float64(n2+1)/2
	mean := float64(n1) * float64(n2) / 2
	variance := float64(n1) * float64(n2) / 12 * ((n + 1) - ties/(n*(n-1)))
	if variance <= 0 {
		return u, 1 // every value equal: no evidence either way
	}
	z := (u - mean - 0.5) / math.Sqrt(variance)
	return u, 0.5 * math.Erfc(z/math.Sqrt2)
}

// maxShiftValues bounds each side's values in HodgesLehmann: the estimate is a median of
// every pairwise difference, n1×n2 of them.
const maxShiftValues = 512

// HodgesLehmann estimates how much larger b's values are than a's: the median of the
// differences b[j]-a[i] over every pair, the shift that the Mann-Whitney test goes with.
// Sides longer than 512 values are thinned evenly (after sorting) to 512 first.
func HodgesLehmann(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	a, b = thin(a), thin(b)
	diffs := make([]float64, 0, len(a)*len(b))
	for _, y := range b {
		for _, x := range a {
			diffs = append(diffs, y-x)
		}
	}
	return median(diffs)
}

func thin(v []float64) []float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v) <= maxShiftValues {
		return v
	}
	out := make([]float64, maxShiftValues)
	for i := range out {
		out[i] = v[i*len(v)/maxShiftValues]
	}
	return out
}

// median returns the median of v, reordering it; 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

// Quantile returns the q quantile (0 to 1) of v by the nearest rank, without changing v;
// 0 for none.
func Quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
