package resilience

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Breaker is a circuit breaker in front of a backend, built on gobreaker's two-step form so
// that the outcome is reported as soon as the response headers arrive and streamed bodies
// are never held. Connection errors, timeouts and 5xx responses count as failures; requests
// that failed through the client's fault (see ClientFault) count as neither success nor
// failure. Reset closes it at once, for when a health check sees the backend is back.
type Breaker struct {
	next     http.RoundTripper
	settings gobreaker.Settings
	openFor  time.Duration
	onChange func(name string, from, to gobreaker.State)

	resetMu sync.Mutex // serializes Reset
	cb      atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
}

// BreakerSettings configures a Breaker.
type BreakerSettings struct {
	// Name identifies the breaker in errors and to OnStateChange.
	Name string
	// ConsecutiveFailures opens the breaker. Zero means 5.
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before it admits trial requests. Zero
	// means 5s.
	OpenFor time.Duration
	// HalfOpenRequests is how many trial requests a half-open breaker admits; that many
	// successes in a row close it. Zero means 1.
	HalfOpenRequests uint32
	// OnStateChange, if set, is called on every transition, Reset's included. It runs
	// while the breaker is locked, so it must not call the breaker.
	OnStateChange func(name string, from, to gobreaker.State)
}

var _ http.RoundTripper = (*Breaker)(nil)

// errClientGone is reported for requests that failed through the client's fault;
// IsExcluded drops them.
var errClientGone = errors.New("client went away")

// errServerError is reported for 5xx responses.
var errServerError = errors.New("server error response")

// NewBreaker returns a breaker in front of next.
func NewBreaker(next http.RoundTripper, s BreakerSettings) *Breaker {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 5 * time.Second
	}
	if s.HalfOpenRequests == 0 {
		s.HalfOpenRequests = 1
	}
	failures := s.ConsecutiveFailures
	b := &Breaker{
		next:     next,
		openFor:  s.OpenFor,
		onChange: s.OnStateChange,
		settings: gobreaker.Settings{
			Name:          s.Name,
			MaxRequests:   s.HalfOpenRequests,
			Timeout:       s.OpenFor,
			ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			OnStateChange: s.OnStateChange,
			IsExcluded:    func(err error) bool { return errors.Is(err, errClientGone) },
		},
	}
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](b.settings))
	return b
}

// State returns the breaker's state.
func (b *Breaker) State() gobreaker.State { return b.cb.Load().State() }

// OpenFor returns how long the breaker stays open.
func (b *Breaker) OpenFor() time.Duration { return b.openFor }

// Reset closes the breaker at once, with its counts cleared, and reports whether it was
// open or half-open. gobreaker has no reset of its own, so Reset swaps in a fresh one;
// requests admitted by the old one report their outcome to it, where it no longer counts.
func (b *Breaker) Reset() bool {
	b.resetMu.Lock()
	defer b.resetMu.Unlock()
	old := b.cb.Load()
	from := old.State()
	if from == gobreaker.StateClosed {
		return false
	}
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](b.settings))
	if b.onChange != nil {
		b.onChange(b.settings.Name, from, gobreaker.StateClosed)
	}
	return true
}

// RoundTrip sends req unless the breaker is open, and reports the outcome.
func (b *Breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	cb := b.cb.Load()
	done, err := cb.Allow()
	if err != nil {
		return nil, fmt.Errorf("%s %s: breaker %s: %v: %w", req.Method, req.URL.Host, cb.Name(), err, ErrCircuitOpen)
	}
	resp, err := b.next.RoundTrip(req)
	switch {
	case ClientFault(req, err):
		done(errClientGone)
	case err != nil:
		done(err)
	case resp.StatusCode >= 500:
		done(errServerError)
	default:
		done(nil)
	}
	return resp, err
}
