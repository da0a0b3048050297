package facade

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the traffic history the dashboard draws.
const (
	// historyInterval is how long one point of a backend's history covers.
	historyInterval = 2 * time.Second
	// historyPoints is how many points a backend's history keeps: ten minutes.
	historyPoints = 300
	// recentPoints is how many of the latest points make a backend's "last minute".
	recentPoints = int(time.Minute / historyInterval)
	// latencyBuckets is the size of the latency histogram: log-linear, eight buckets per
	// power of two from 16µs up (each within 6% of the values it holds), exact below 16µs,
	// the last bucket holding everything from about 67s up.
	latencyBuckets = 16 + 8*23
)

// The ring of a series' last minute is indexed by the slot of its ring of points: that
// needs a whole number of minutes in the history. (This fails to compile otherwise.)
const _ = uint(0) - uint(historyPoints%recentPoints)

// history keeps, for each backend, what its answers looked like over the last
// historyPoints intervals — how many, how many failed, latency quantiles — and a latency
// histogram of the last minute: what the dashboard shows and charts. The request path only
// adds to atomic counters; a tick every historyInterval turns what they gained into a point.
// Its memory is bounded whatever the request rate: about 60 KB per backend.
type history struct {
	mu     sync.Mutex
	series map[string]*series // by backend name
}

// series is one backend's history.
type series struct {
	// total counts every answer since the series began; it only grows. A tick turns what
	// it gained since the last tick into a point, so an answer counted while a tick reads
	// lands in this point or the next, never in none.
	total tally

	// Guarded by history.mu.
	seen    counts // total at the last tick
	points  [historyPoints]Point
	minute  [recentPoints][latencyBuckets]int64 // the latest points' histograms, a ring
	next, n int                                 // the ring's next slot and fill, shared by both rings
}

// tally counts answers.
type tally struct {
	n, failed atomic.Int64
	latency   [latencyBuckets]atomic.Int64
}

// counts is a tally read at one moment.
type counts struct {
	n, failed int64
	latency   [latencyBuckets]int64
}

func (t *tally) load() counts {
	c := counts{n: t.n.Load(), failed: t.failed.Load()}
	for i := range c.latency {
		c.latency[i] = t.latency[i].Load()
	}
	return c
}

// Point is what a backend's answers looked like over one interval of its history.
type Point struct {
	// Time is the end of the interval.
	Time time.Time `json:"time"`
	// Requests counts the answers, Errors those that were a 5xx or no answer at all.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// P50, P90 and P99 are latency quantiles in seconds, 0 without requests.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Traffic is what a backend's answers looked like over the last minute.
type Traffic struct {
	// Rate is answers per second; ErrorRate the share of them that were a 5xx or none.
	Rate      float64 `json:"rate"`
	ErrorRate float64 `json:"error_rate"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	// P50, P90 and P99 are latency quantiles in seconds (within 6%), 0 without requests.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

func newHistory() *history { return &history{series: map[string]*series{}} }

// forBackend returns backend's series, making it on first use. A table that is being built
// resolves its routes' series with it, so answers are counted from the first request.
func (h *history) forBackend(name string) *series {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.series[name]
	if !ok {
		s = &series{}
		h.series[name] = s
	}
	return s
}

// retain drops the series of backends that backends no longer names, as the metrics drop
// theirs: the history describes the config that serves.
func (h *history) retain(backends map[string]*Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.series {
		if _, ok := backends[name]; !ok {
			delete(h.series, name)
		}
	}
}

// observe counts one answer: a status of 0 (none) or 5xx is an error.
func (s *series) observe(status int, d time.Duration) {
	s.total.n.Add(1)
	if status == 0 || status >= 500 {
		s.total.failed.Add(1)
	}
	s.total.latency[bucketOf(d)].Add(1)
}

// tick closes the interval that ends at now on every series.
func (h *history) tick(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.series {
		c := s.total.load()
		var hist [latencyBuckets]int64
		for i := range hist {
			hist[i] = c.latency[i] - s.seen.latency[i]
		}
		p := Point{Time: now, Requests: c.n - s.seen.n, Errors: c.failed - s.seen.failed}
		p.P50, p.P90, p.P99 = quantile(&hist, 0.5), quantile(&hist, 0.9), quantile(&hist, 0.99)
		s.seen = c
		s.points[s.next] = p
		s.minute[s.next%recentPoints] = hist
		s.next = (s.next + 1) % historyPoints
		s.n = min(s.n+1, historyPoints)
	}
}

// read returns backend's points, oldest first, and its last minute; ok is false for a
// backend with no series.
func (h *history) read(name string) (points []Point, last Traffic, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.series[name]
	if !ok {
		return nil, Traffic{}, false
	}
	points = make([]Point, 0, s.n)
	for i := s.n; i > 0; i-- {
		points = append(points, s.points[(s.next-i+historyPoints)%historyPoints])
	}
	var hist [latencyBuckets]int64
	k := min(s.n, recentPoints)
	for i := 1; i <= k; i++ {
		slot := (s.next - i + historyPoints) % historyPoints
		p := s.points[slot]
		last.Requests += p.Requests
		last.Errors += p.Errors
		for b, c := range s.minute[slot%recentPoints] {
			hist[b] += c
		}
	}
	if k > 0 {
		last.Rate = float64(last.Requests) / (time.Duration(k) * historyInterval).Seconds()
	}
	if last.Requests > 0 {
		last.ErrorRate = float64(last.Errors) / float64(last.Requests)
	}
	last.P50, last.P90, last.P99 = quantile(&hist, 0.5), quantile(&hist, 0.9), quantile(&hist, 0.99)
	return points, last, true
}

// run ticks every historyInterval until done is closed.
func (h *history) run(done <-chan struct{}) {
	t := time.NewTicker(historyInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			h.tick(now)
		}
	}
}

// bucketOf is the histogram bucket of a latency: microseconds below 16 exactly, above that
// eight buckets per power of two.
func bucketOf(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 16 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // 4 and up
	sub := int(us>>(e-3)) & 7
	return min(16+(e-4)*8+sub, latencyBuckets-1)
}

// bucketValue is the middle of bucket i's range, in seconds.
func bucketValue(i int) float64 {
	if i < 16 {
		return (float64(i) + 0.5) / 1e6
	}
	e := (i-16)/8 + 4
	sub := (i - 16) % 8
	low := float64(uint64(8+sub) << (e - 3))
	width := float64(uint64(1) << (e - 3))
	return (low + width/2) / 1e6
}

// quantile is the q-quantile of the latencies counted in counts, in seconds; 0 for none.
func quantile(counts *[latencyBuckets]int64, q float64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	// The rank of the quantile, 1-based, as the nearest-rank method defines it.
	rank := min(max(int64(math.Ceil(q*float64(total))), 1), total)
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return bucketValue(i)
		}
	}
	return bucketValue(latencyBuckets - 1)
}
