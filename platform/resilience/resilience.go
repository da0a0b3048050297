// Package resilience holds the http.RoundTripper middlewares put in front of a backend:
// Bulkhead, Health, Breaker, Retry and Timeout, chained in that order around the transport.
// The facade chains them per backend; the monolith's remote adapters and the extracted
// services' clients use the same policies for their own outbound calls, which is why they
// live in platform/ rather than in the facade. Each one is small, knows nothing of the others, and reports what it does
// through plain function hooks so metrics stay outside.
//
// Failures that are the client's doing (see ClientFault) are kept apart from the backend's
// everywhere: the breaker does not count them, Retry does not retry them, and Timeout does
// not count the time spent waiting for a client's body against the backend.
package resilience

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Errors the middlewares return; the facade maps them to problem responses.
var (
	// ErrTimeout means an attempt got no response headers within its timeout.
	ErrTimeout = errors.New("backend timed out")
	// ErrCircuitOpen means the backend's circuit breaker refused the request.
	ErrCircuitOpen = errors.New("circuit breaker open")
	// ErrBulkheadFull means the backend's bulkhead had no slot and no room to wait.
	ErrBulkheadFull = errors.New("bulkhead full")
	// ErrUnhealthy means the backend's active health check marks it down.
	ErrUnhealthy = errors.New("backend unhealthy")
	// ErrClientBody marks a failure to read the request body from the client: malformed,
	// cut off, too slow or too large. It says nothing about the backend.
	ErrClientBody = errors.New("reading the request body from the client")
)

// ClientBody is what the body of a request a client is still sending can tell the chain.
// The facade attaches one to each inbound request with a body (see ClientBodyKey); requests
// made any other way need not have one.
type ClientBody interface {
	// ClientErr returns the error reading the body from the client failed with, or nil.
	ClientErr() error
	// Waited returns how long readers of the body have spent waiting for the client to
	// send it, a read in progress included.
	Waited() time.Duration
}

// ClientBodyKey is the context key under which a request's context holds its ClientBody.
// WithClientBody sets it; a context type of the caller's may also answer it from its own
// Value method, which saves an allocation per request.
type ClientBodyKey struct{}

// WithClientBody returns ctx carrying body as its request's ClientBody.
func WithClientBody(ctx context.Context, body ClientBody) context.Context {
	return context.WithValue(ctx, ClientBodyKey{}, body)
}

// ClientBodyOf returns the ClientBody req's context carries, or nil.
func ClientBodyOf(req *http.Request) ClientBody {
	body, _ := req.Context().Value(ClientBodyKey{}).(ClientBody)
	return body
}

// ClientFault reports whether err, the failure of sending req, is the client's doing: the
// client went away (the request's context ended), or its body could not be read. The
// transport may report a failed body as the broken connection it caused, so the request's
// ClientBody is asked too.
func ClientFault(req *http.Request, err error) bool {
	if err == nil {
		return false
	}
	if req.Context().Err() != nil || errors.Is(err, ErrClientBody) {
		return true
	}
	body := ClientBodyOf(req)
	return body != nil && body.ClientErr() != nil
}

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
