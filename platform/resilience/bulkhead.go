package resilience

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Bulkhead bounds the requests in flight to a backend, so one slow backend cannot take every
// goroutine and connection the facade has. A request holds its slot until its response body
// is closed. When every slot is taken, up to MaxQueue requests wait up to QueueTimeout for
// one; the rest are refused at once with ErrBulkheadFull.
type Bulkhead struct {
	next     http.RoundTripper
	sem      chan struct{}
	maxQueue int64
	wait     time.Duration
	onReject func()
	// releaseFn is release as a func value, made once: a method value made per request
	// would allocate.
	releaseFn func()

	inFlight atomic.Int64
	queued   atomic.Int64
}

// BulkheadSettings configures a Bulkhead.
type BulkheadSettings struct {
	// MaxConcurrent is the most requests in flight at once. Zero means unbounded.
	MaxConcurrent int
	// MaxQueue is how many requests may wait for a slot. Zero means none wait.
	MaxQueue int
	// QueueTimeout is the longest a request waits for a slot. Zero means 1s.
	QueueTimeout time.Duration
	// OnReject, if set, is called for each refused request.
	OnReject func()
}

var _ http.RoundTripper = (*Bulkhead)(nil)

// NewBulkhead returns a bulkhead in front of next.
func NewBulkhead(next http.RoundTripper, s BulkheadSettings) *Bulkhead {
	b := &Bulkhead{next: next, maxQueue: int64(s.MaxQueue), wait: s.QueueTimeout, onReject: s.OnReject}
	if s.MaxConcurrent > 0 {
		b.sem = make(chan struct{}, s.MaxConcurrent)
	}
	if b.wait <= 0 {
		b.wait = time.Second
	}
	if b.onReject == nil {
		b.onReject = func() {}
	}
	b.releaseFn = b.release
	return b
}

// InFlight returns the number of requests holding a slot.
func (b *Bulkhead) InFlight() int64 { return b.inFlight.Load() }

// Queued returns the number of requests waiting for a slot.
func (b *Bulkhead) Queued() int64 { return b.queued.Load() }

// RoundTrip sends req once it holds a slot.
func (b *Bulkhead) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := b.acquire(req); err != nil {
		return nil, err
	}
	b.inFlight.Add(1)
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		b.release()
		return nil, err
	}
	resp.Body = hookClose(resp.Body, b.releaseFn)
	return resp, nil
}

func (b *Bulkhead) release() {
	b.inFlight.Add(-1)
	if b.sem != nil {
		<-b.sem
	}
}

func (b *Bulkhead) acquire(req *http.Request) error {
	if b.sem == nil {
		return nil
	}
	select {
	case b.sem <- struct{}{}:
		return nil
	default:
	}
	if b.queued.Add(1) > b.maxQueue {
		b.queued.Add(-1)
		b.onReject()
		return fmt.Errorf("%s %s: %d requests in flight and %d waiting: %w", req.Method, req.URL.Host, cap(b.sem), b.maxQueue, ErrBulkheadFull)
	}
	defer b.queued.Add(-1)
	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-timer.C:
		b.onReject()
		return fmt.Errorf("%s %s: no slot free within %s: %w", req.Method, req.URL.Host, b.wait, ErrBulkheadFull)
	case <-req.Context().Done():
		return fmt.Errorf("waiting for a bulkhead slot: %w", req.Context().Err())
	}
}
