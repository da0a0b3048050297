// Package gate judges whether a route's candidate backend may be promoted, and whether a
// running canary must be rolled back: it keeps each side's recent outcomes in sliding
// windows and compares them, latencies by a Mann-Whitney U test rather than two averages,
// as automated canary analysis (Kayenta) does.
package gate

import (
	"math/rand/v2"
	"sync"
	"time"
)

// windowBuckets is how many buckets a Window's span is cut into: the window slides by a tenth.
const windowBuckets = 10

// keptPerBucket bounds the latencies a bucket keeps (a uniform reservoir of what it saw).
const keptPerBucket = 256

// Window counts one side's outcomes over a sliding span of time — how many, how many were
// bad (errors, or differences) — and keeps a bounded uniform sample of their latencies. It
// is safe for concurrent use; its memory is bounded whatever the rate.
type Window struct {
	span time.Duration // of one bucket
	now  func() time.Time

	mu      sync.Mutex
	buckets [windowBuckets]bucket
	rng     *rand.Rand
}

type bucket struct {
	slot      int64 // which span-long slot of time it counts; stale when older than the window
	n, bad    int64
	seen      int64 // latencies offered, for the reservoir
	latencies []float64
}

// NewWindow returns a window over the last span, read with now (time.Now when nil).
func NewWindow(span time.Duration, now func() time.Time) *Window {
	if now == nil {
		now = time.Now
	}
	if span < windowBuckets {
		span = windowBuckets
	}
	return &Window{span: span / windowBuckets, now: now, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Observe counts one outcome; latency below 0 means none to keep (a difference count).
func (w *Window) Observe(bad bool, latency time.Duration) {
	slot := w.now().UnixNano() / int64(w.span)
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &w.buckets[slot%windowBuckets]
	if b.slot != slot {
		*b = bucket{slot: slot, latencies: b.latencies[:0]}
	}
	b.n++
	if bad {
		b.bad++
	}
	if latency < 0 {
		return
	}
	b.seen++
	v := latency.Seconds()
	if len(b.latencies) < keptPerBucket {
		b.latencies = append(b.latencies, v)
	} else if i := w.rng.Int64N(b.seen); i < keptPerBucket {
		b.latencies[i] = v
	}
}

// Side is what a window saw over its span.
type Side struct {
	// N counts the outcomes, Bad the bad ones.
	N, Bad int64
	// Latencies is a uniform sample of their latencies, in seconds, at most 2,560.
	Latencies []float64
}

// Rate is Bad over N, 0 when N is 0.
func (s Side) Rate() float64 {
	if s.N == 0 {
		return 0
	}
	return float64(s.Bad) / float64(s.N)
}

// Snapshot returns what the window saw over its span.
func (w *Window) Snapshot() Side { return w.snapshot(true) }

// Counts returns what the window saw over its span without the latencies: cheap enough for
// the request path.
func (w *Window) Counts() Side { return w.snapshot(false) }

func (w *Window) snapshot(latencies bool) Side {
	slot := w.now().UnixNano() / int64(w.span)
	w.mu.Lock()
	defer w.mu.Unlock()
	var s Side
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.slot <= slot-windowBuckets || b.slot > slot {
			continue
		}
		s.N += b.n
		s.Bad += b.bad
		if latencies {
			s.Latencies = append(s.Latencies, b.latencies...)
		}
	}
	return s
}
