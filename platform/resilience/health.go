package resilience

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Health is a backend's active health check and the gate in front of its breaker. Run
// probes the backend with GET every Interval. A probe passes when the backend answers with a
// status below 500 within Timeout: a backend that answers at all is up, even one that lacks
// the probed path. UnhealthyThreshold failed probes in a row mark the backend unhealthy, and
// while it is, RoundTrip refuses requests at once with ErrUnhealthy instead of letting each
// one find out; HealthyThreshold passing probes in a row mark it healthy again.
//
// A backend can be down for less than UnhealthyThreshold probes, as during a quick restart,
// yet long enough to open its breaker. So OnRecover reports every return after a failed
// probe, and Poke asks for a probe at once (when the breaker opens), so a short outage is
// seen as one.
//
// A new Health counts the backend as healthy until probes say otherwise.
type Health struct {
	next http.RoundTripper
	s    HealthSettings
	poke chan struct{}

	healthy atomic.Bool

	mu     sync.Mutex // guards the counts; probes run one at a time, in Run
	passed int        // probes passed in a row
	failed int        // probes failed in a row
	down   bool       // a probe failed since the backend last recovered
}

// HealthSettings configures a Health.
type HealthSettings struct {
	// URL is the address probed with GET. Required.
	URL string
	// Transport sends the probes. Zero means http.DefaultTransport.
	Transport http.RoundTripper
	// Interval is the time from the end of one probe to the start of the next. Zero means 1s.
	Interval time.Duration
	// Timeout bounds one probe. Zero means 1s.
	Timeout time.Duration
	// HealthyThreshold is how many probes in a row must pass, after one failed, for the
	// backend to count as healthy again. Zero means 1.
	HealthyThreshold int
	// UnhealthyThreshold is how many probes in a row must fail for the backend to count as
	// unhealthy. Zero means 2.
	UnhealthyThreshold int
	// OnChange, if set, is called when the backend turns unhealthy, or healthy again, with
	// the outcome of the probe that decided it (nil when it passed).
	OnChange func(healthy bool, err error)
	// OnRecover, if set, is called when HealthyThreshold probes in a row have passed after
	// one failed: the backend is back, whether or not it had been marked unhealthy.
	OnRecover func()
	// OnProbe, if set, is called after each probe with its outcome (nil when it passed),
	// once OnChange and OnRecover have run.
	OnProbe func(err error)
	// After returns a channel that receives once d has passed; Run waits on it between
	// probes. Zero means time.After. Tests use it to run probes one at a time.
	After func(d time.Duration) <-chan time.Time
}

var _ http.RoundTripper = (*Health)(nil)

// NewHealth returns a health check of the backend next sends to. Run starts the probes.
func NewHealth(next http.RoundTripper, s HealthSettings) *Health {
	if s.Transport == nil {
		s.Transport = http.DefaultTransport
	}
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = time.Second
	}
	if s.HealthyThreshold <= 0 {
		s.HealthyThreshold = 1
	}
	if s.UnhealthyThreshold <= 0 {
		s.UnhealthyThreshold = 2
	}
	if s.After == nil {
		s.After = time.After
	}
	h := &Health{next: next, s: s, poke: make(chan struct{}, 1)}
	h.healthy.Store(true)
	return h
}

// Healthy reports whether the probes count the backend as healthy.
func (h *Health) Healthy() bool { return h.healthy.Load() }

// Interval returns the time between probes.
func (h *Health) Interval() time.Duration { return h.s.Interval }

// RoundTrip sends req unless the backend is unhealthy.
func (h *Health) RoundTrip(req *http.Request) (*http.Response, error) {
	if !h.healthy.Load() {
		return nil, fmt.Errorf("%s %s: %d health checks in a row failed: %w", req.Method, req.URL.Host, h.s.UnhealthyThreshold, ErrUnhealthy)
	}
	return h.next.RoundTrip(req)
}

// Poke asks Run for a probe now rather than at the end of the interval. It never blocks.
func (h *Health) Poke() {
	select {
	case h.poke <- struct{}{}:
	default:
	}
}

// Run probes the backend until ctx is done: once at once, then every Interval, or sooner
// when poked.
func (h *Health) Run(ctx context.Context) {
	for {
		err := h.probe(ctx)
		if ctx.Err() != nil {
			return // a probe cut short by the end of Run says nothing about the backend
		}
		h.record(err)
		select {
		case <-ctx.Done():
			return
		case <-h.s.After(h.s.Interval):
		case <-h.poke:
		}
	}
}

// probe sends one GET to the backend and reports why it failed, or nil.
func (h *Health) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.s.URL, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	req.Header.Set("User-Agent", "ficus-health-check")
	resp, err := h.s.Transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	// Drain a little so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("health check: GET %s answered %s", req.URL.Path, resp.Status)
	}
	return nil
}

// record counts a probe's outcome and calls the hooks it warrants.
func (h *Health) record(err error) {
	var changed, recovered bool
	h.mu.Lock()
	if err == nil {
		h.passed++
		h.failed = 0
		if h.passed >= h.s.HealthyThreshold {
			changed = !h.healthy.Swap(true)
			recovered = h.down
			h.down = false
		}
	} else {
		h.failed++
		h.passed = 0
		h.down = true
		if h.failed >= h.s.UnhealthyThreshold {
			changed = h.healthy.Swap(false)
		}
	}
	healthy := h.healthy.Load()
	h.mu.Unlock()

	if changed && h.s.OnChange != nil {
		h.s.OnChange(healthy, err)
	}
	if recovered && h.s.OnRecover != nil {
		h.s.OnRecover()
	}
	if h.s.OnProbe != nil {
		h.s.OnProbe(err)
	}
}
