package resilience

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Timeout bounds one attempt: the time from sending the request to receiving the response
// headers. Once the headers are in, the body may stream for as long as it takes; the
// attempt's context is released when the body is closed.
type Timeout struct {
	// Next sends the request. Required.
	Next http.RoundTripper
	// Timeout is the limit. Zero or less means none.
	Timeout time.Duration
}

var _ http.RoundTripper = (*Timeout)(nil)

// RoundTrip sends req through Next and returns an error wrapping ErrTimeout when the
// headers do not arrive in time.
func (t *Timeout) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Timeout <= 0 {
		return t.Next.RoundTrip(req)
	}
	ctx, cancel := context.WithCancel(req.Context())
	timer := time.AfterFunc(t.Timeout, cancel)
	resp, err := t.Next.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() {
		// The timer fired: the attempt timed out, even if headers raced in just after.
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("%s %s: no response within %s: %w", req.Method, req.URL.Host, t.Timeout, ErrTimeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = hookClose(resp.Body, cancel)
	return resp, nil
}
