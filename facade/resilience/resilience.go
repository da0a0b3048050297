// Package resilience holds the http.RoundTripper middlewares the facade puts in front of
// every backend: Bulkhead, Breaker, Retry and Timeout, chained in that order around the
// transport. Each one is small, knows nothing of the others, and reports what it does
// through plain function hooks so metrics stay outside.
package resilience

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// Errors the middlewares return; the facade maps them to problem responses.
var (
	// ErrTimeout means an attempt got no response headers within its timeout.
	ErrTimeout = errors.New("backend timed out")
	// ErrCircuitOpen means the backend's circuit breaker refused the request.
	ErrCircuitOpen = errors.New("circuit breaker open")
	// ErrBulkheadFull means the backend's bulkhead had no slot and no room to wait.
	ErrBulkheadFull = errors.New("bulkhead full")
)

// RoundTripFunc lets a function serve as an http.RoundTripper.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var _ http.RoundTripper = RoundTripFunc(nil)

// Safe reports whether method is safe (RFC 9110): it changes nothing, so a request with it
// may go to a fallback backend.
func Safe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// Idempotent reports whether r may be sent more than once: an idempotent method (RFC 9110
// section 9.2.2) or any request that carries an Idempotency-Key header.
func Idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// onClose wraps a response body so fn runs exactly once when the body is closed: that is
// when a streamed response really ends.
type onClose struct {
	io.ReadCloser
	done atomic.Bool
	fn   func()
}

func hookClose(body io.ReadCloser, fn func()) io.ReadCloser {
	if body == nil {
		fn()
		return nil
	}
	return &onClose{ReadCloser: body, fn: fn}
}

// Close closes the body and runs the hook.
func (c *onClose) Close() error {
	err := c.ReadCloser.Close()
	if c.done.CompareAndSwap(false, true) {
		c.fn()
	}
	return err
}

// Write forwards to the body when it is writable, as the body of a 101 Switching Protocols
// response is; httputil.ReverseProxy needs that to relay upgraded connections.
func (c *onClose) Write(p []byte) (int, error) {
	if w, ok := c.ReadCloser.(io.Writer); ok {
		return w.Write(p)
	}
	return 0, errors.New("response body is not writable")
}
