package facade

import (
	"math"
	"sync"
	"testing"
	"time"
)

// TestLatencyBucketsStayWithinSixPercent: every latency from 1µs to a minute lands in a
// bucket whose value is within 6.25% of it (exact below 16µs), and buckets grow with the
// latency.
func TestLatencyBucketsStayWithinSixPercent(t *testing.T) {
	prev := -1
	for us := int64(1); us <= int64(time.Minute/time.Microsecond); us = us*21/20 + 1 {
		d := time.Duration(us) * time.Microsecond
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("%s is in bucket %d, below the %d of a shorter latency", d, b, prev)
		}
		prev = b
		got, want := bucketValue(b), d.Seconds()
		// Half a microsecond off below 16µs; above, half a bucket, 1/16 of its low end.
		off, bound := math.Abs(got-want), 0.5e-6
		if us >= 16 {
			off, bound = off/want, 1.0/16
		}
		if off > bound+1e-9 {
			t.Errorf("%s: bucket %d is worth %gs, off by %g (bound %g)", d, b, got, off, bound)
		}
	}
	if b := bucketOf(time.Hour); b != latencyBuckets-1 {
		t.Errorf("an hour is in bucket %d, want the last, %d", b, latencyBuckets-1)
	}
	if b := bucketOf(-time.Second); b != 0 {
		t.Errorf("a negative latency is in bucket %d, want 0", b)
	}
}

// TestHistoryPointsAndLastMinute: the answers counted between two ticks become the second
// tick's point; the last minute sums the latest points.
func TestHistoryPointsAndLastMinute(t *testing.T) {
	h := newHistory()
	s := h.forBackend("inventory")
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return start.Add(time.Duration(i) * historyInterval) }

	h.tick(at(0)) // an empty interval
	// 100 answers: 90 fast (1ms), 9 slow (100ms), 1 with no answer at 1s.
	for range 90 {
		s.observe(200, time.Millisecond)
	}
	for range 9 {
		s.observe(200, 100*time.Millisecond)
	}
	s.observe(0, time.Second)
	h.tick(at(1))
	s.observe(502, time.Millisecond) // counted in the next interval
	points, last, ok := h.read("inventory")
	if !ok || len(points) != 2 || points[0].Requests != 0 {
		t.Fatalf("after two ticks: points %+v (ok %v), want an empty one and one", points, ok)
	}
	p := points[1]
	if p.Requests != 100 || p.Errors != 1 || !p.Time.Equal(at(1)) {
		t.Errorf("point = %+v, want 100 requests, 1 error, at %s", p, at(1))
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want)/want > 0.0625 {
			t.Errorf("%s = %gs, want %gs within 6.25%%", name, got, want)
		}
	}
	near("p50", p.P50, 0.001)
	near("p90", p.P90, 0.001)
	near("p99", p.P99, 0.1)
	if last.Requests != 100 || last.Errors != 1 || last.ErrorRate != 0.01 {
		t.Errorf("last minute = %+v, want 100 requests, 1 error, error rate 0.01", last)
	}
	if want := 100 / (2 * historyInterval).Seconds(); last.Rate != want {
		t.Errorf("rate = %g/s, want %g/s (two intervals of data)", last.Rate, want)
	}

	h.tick(at(2))
	_, last, _ = h.read("inventory")
	if last.Requests != 101 || last.Errors != 2 {
		t.Errorf("last minute after the 502's interval: %+v, want 101 requests, 2 errors", last)
	}
	if _, _, ok := h.read("payments"); ok {
		t.Error("a backend never seen has a history")
	}
}

// TestHistoryKeepsTenMinutesAndForgetsOlder: the ring holds historyPoints points, oldest
// first, and the last minute covers only the latest minute's points.
func TestHistoryKeepsTenMinutesAndForgetsOlder(t *testing.T) {
	h := newHistory()
	s := h.forBackend("monolith")
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const ticks = historyPoints + 2*recentPoints + 7
	for i := range ticks {
		// Interval i gets i answers, so the points say which interval they are.
		for range i {
			s.observe(200, time.Millisecond)
		}
		h.tick(start.Add(time.Duration(i) * historyInterval))
	}
	points, last, _ := h.read("monolith")
	if len(points) != historyPoints {
		t.Fatalf("%d points, want %d", len(points), historyPoints)
	}
	for i, p := range points {
		// Tick i's point holds interval i's answers.
		if want := int64(ticks - historyPoints + i); p.Requests != want {
			t.Fatalf("point %d: %d requests, want %d (oldest first, the oldest dropped)", i, p.Requests, want)
		}
	}
	var want int64
	for i := ticks - recentPoints; i < ticks; i++ {
		want += int64(i)
	}
	if last.Requests != want {
		t.Errorf("last minute: %d requests, want %d (the latest %d points)", last.Requests, want, recentPoints)
	}
}

// TestHistoryRetainsOnlyConfiguredBackends: a reload that drops a backend drops its history.
func TestHistoryRetainsOnlyConfiguredBackends(t *testing.T) {
	h := newHistory()
	h.forBackend("a").observe(200, time.Millisecond)
	h.forBackend("b").observe(200, time.Millisecond)
	h.retain(map[string]*Backend{"a": nil})
	if _, _, ok := h.read("b"); ok {
		t.Error("b's history outlived b")
	}
	if _, _, ok := h.read("a"); !ok {
		t.Error("a's history is gone though a is configured")
	}
}

// TestHistoryCountsWhileTicking: answers counted from many goroutines while the ring ticks
// back to back and is read are all counted, once (run with -race).
func TestHistoryCountsWhileTicking(t *testing.T) {
	h := newHistory()
	s := h.forBackend("a")
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				s.observe(200, time.Millisecond)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	now := time.Now()
	ticking := true
	for ticking {
		select {
		case <-done:
			ticking = false
		default:
		}
		now = now.Add(historyInterval)
		h.tick(now)
		h.read("a")
	}
	// One more tick turns the last interval into a point.
	h.tick(now.Add(historyInterval))
	points, _, _ := h.read("a")
	var n int64
	for _, p := range points {
		n += p.Requests
	}
	if n != workers*each {
		t.Errorf("%d answers in the points, want %d", n, workers*each)
	}
}
