package resilience

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Timeout bounds one attempt: the time from sending the request to receiving the response
// headers. Once the headers are in, the body may stream for as long as it takes; the
// attempt's context is released when the body is closed.
//
// Time spent waiting for the client to send its request body (see ClientBody) is the
// client's, not the backend's, and does not count: a slow upload is bounded by the facade's
// body timeout and answered as the client's error, never as a backend timeout.
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
	var (
		waiting *attemptTimer
		timer   *time.Timer
	)
	if body := ClientBodyOf(req); body != nil {
		waiting = &attemptTimer{start: time.Now(), waited: body.Waited(), limit: t.Timeout, body: body, cancel: cancel}
		waiting.begin()
	} else {
		// The common case, a request without a body the client is still sending: one timer.
		timer = time.AfterFunc(t.Timeout, cancel)
	}
	resp, err := t.Next.RoundTrip(req.WithContext(ctx))
	var timedOut bool
	if waiting != nil {
		timedOut = waiting.stop()
	} else {
		timedOut = !timer.Stop()
	}
	if timedOut {
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

// attemptTimer cancels an attempt once the backend has had limit to answer, not counting
// the time spent waiting for the client's body: when it fires early because of that wait, it
// sets itself again for the backend's remaining time.
type attemptTimer struct {
	start  time.Time
	waited time.Duration // the body's Waited when the attempt started
	limit  time.Duration
	body   ClientBody
	cancel context.CancelFunc

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	fired   bool
}

func (a *attemptTimer) begin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = time.AfterFunc(a.limit, a.fire)
}

func (a *attemptTimer) fire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	if used := time.Since(a.start) - (a.body.Waited() - a.waited); used < a.limit {
		a.timer.Reset(a.limit - used)
		return
	}
	a.fired = true
	a.cancel()
}

// stop stops the timer and reports whether it had fired.
func (a *attemptTimer) stop() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	a.timer.Stop()
	return a.fired
}
