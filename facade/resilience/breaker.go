package resilience

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Breaker is a circuit breaker in front of a backend, built on gobreaker's two-step form so
// that the outcome is reported as soon as the response headers arrive and streamed bodies
// are never held. Connection errors, timeouts and 5xx responses count as failures; requests
// the client itself abandoned count as neither success nor failure.
type Breaker struct {
	next    http.RoundTripper
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	openFor time.Duration
}

// BreakerSettings configures a Breaker.
type BreakerSettings struct {
	// Name identifies the breaker in errors and to OnStateChange.
	Name string
	// ConsecutiveFailures opens the breaker. Zero means 5.
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before it admits trial requests. Zero
	// means 30s.
	OpenFor time.Duration
	// HalfOpenRequests is how many trial requests a half-open breaker admits; that many
	// successes in a row close it. Zero means 1.
	HalfOpenRequests uint32
	// OnStateChange, if set, is called on every transition. It runs while the breaker is
	// locked, so it must not call the breaker.
	OnStateChange func(name string, from, to gobreaker.State)
}

var _ http.RoundTripper = (*Breaker)(nil)

// errClientGone is reported for requests whose own context ended; IsExcluded drops them.
var errClientGone = errors.New("client went away")

// errServerError is reported for 5xx responses.
var errServerError = errors.New("server error response")

// NewBreaker returns a breaker in front of next.
func NewBreaker(next http.RoundTripper, s BreakerSettings) *Breaker {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 30 * time.Second
	}
	if s.HalfOpenRequests == 0 {
		s.HalfOpenRequests = 1
	}
	failures := s.ConsecutiveFailures
	return &Breaker{
		next:    next,
		openFor: s.OpenFor,
		cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:          s.Name,
			MaxRequests:   s.HalfOpenRequests,
			Timeout:       s.OpenFor,
			ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			OnStateChange: s.OnStateChange,
			IsExcluded:    func(err error) bool { return errors.Is(err, errClientGone) },
		}),
	}
}

// State returns the breaker's state.
func (b *Breaker) State() gobreaker.State { return b.cb.State() }

// OpenFor returns how long the breaker stays open.
func (b *Breaker) OpenFor() time.Duration { return b.openFor }

// RoundTrip sends req unless the breaker is open, and reports the outcome.
func (b *Breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	done, err := b.cb.Allow()
	if err != nil {
		return nil, fmt.Errorf("%s %s: breaker %s: %v: %w", req.Method, req.URL.Host, b.cb.Name(), err, ErrCircuitOpen)
	}
	resp, err := b.next.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil:
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
