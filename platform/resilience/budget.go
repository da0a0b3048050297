package resilience

import (
	"sync"
	"time"
)

// Budget caps retries as a fraction of requests over a sliding window, so that when a
// backend is down retries add at most that fraction to its load instead of multiplying it.
// On top of the fraction, MinRetries retries per window are always allowed, so a backend
// with little traffic still gets its occasional retry.
type Budget struct {
	ratio   float64
	min     float64
	slot    time.Duration
	now     func() time.Time
	mu      sync.Mutex
	buckets [budgetBuckets]bucket
}

const budgetBuckets = 10

type bucket struct {
	slot              int64
	requests, retries int64
}

// BudgetSettings configures a Budget.
type BudgetSettings struct {
	// Ratio is the most retries per request, above 0 and at most 1. Zero means 0.2.
	Ratio float64
	// MinRetries are allowed per window whatever the ratio. Zero means 10; negative, none.
	MinRetries int
	// Window is the sliding window. Zero means 10s.
	Window time.Duration
	// Now tells the time. Zero means time.Now.
	Now func() time.Time
}

// NewBudget returns a retry budget.
func NewBudget(s BudgetSettings) *Budget {
	if s.Ratio <= 0 {
		s.Ratio = 0.2
	}
	if s.MinRetries == 0 {
		s.MinRetries = 10
	}
	if s.MinRetries < 0 {
		s.MinRetries = 0
	}
	if s.Window <= 0 {
		s.Window = 10 * time.Second
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	slot := s.Window / budgetBuckets
	if slot <= 0 {
		slot = 1
	}
	return &Budget{ratio: s.Ratio, min: float64(s.MinRetries), slot: slot, now: s.Now}
}

// current returns the bucket for now, recycling it if it belongs to an old slot. b.mu must
// be held.
func (b *Budget) current() *bucket {
	s := b.now().UnixNano() / int64(b.slot)
	bk := &b.buckets[s%budgetBuckets]
	if bk.slot != s {
		*bk = bucket{slot: s}
	}
	return bk
}

// totals sums the buckets inside the window. b.mu must be held.
func (b *Budget) totals() (requests, retries int64) {
	s := b.now().UnixNano() / int64(b.slot)
	for i := range b.buckets {
		if bk := &b.buckets[i]; bk.slot > s-budgetBuckets {
			requests += bk.requests
			retries += bk.retries
		}
	}
	return requests, retries
}

// Request records one request (not a retry).
func (b *Budget) Request() {
	b.mu.Lock()
	b.current().requests++
	b.mu.Unlock()
}

// Retry reports whether one more retry fits the budget, and if so counts it.
func (b *Budget) Retry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	requests, retries := b.totals()
	if float64(retries+1) > b.min+b.ratio*float64(requests) {
		return false
	}
	b.current().retries++
	return true
}
