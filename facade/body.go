package facade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/platform/resilience"
)

// errBodyTooLarge is what reading a body past facade.max_body_bytes fails with.
var errBodyTooLarge = errors.New("request body larger than the limit")

// clientBody is a request body as the facade reads it from the client. It enforces the
// size limit, lifts the connection's read deadline (the body timeout) once the whole body
// is in, and tells the resilience chain what it needs to keep the client's failures and
// delays apart from the backend's: the error reading it failed with, if any, and how long
// its readers have waited for the client (resilience.ClientBody). It lives inside the
// exchange, so it costs no allocation of its own.
type clientBody struct {
	rc   io.ReadCloser
	w    http.ResponseWriter // the server's, to lift the read deadline
	left int64               // bytes still allowed; read by one reader at a time

	readSince atomic.Int64 // when the read in progress began (UnixNano), 0 when none
	waited    atomic.Int64 // nanoseconds spent in finished reads

	mu       sync.Mutex
	err      error // the first failure, wrapping resilience.ErrClientBody
	detached bool  // the handler is done: the connection may serve another request
	deadline bool  // a read deadline is set on the connection
}

var (
	_ resilience.ClientBody = (*clientBody)(nil)
	_ io.ReadCloser         = (*clientBody)(nil)
)

// Read reads from the client, failing with an error that wraps resilience.ErrClientBody
// when the body is malformed, cut short, late or too large.
func (b *clientBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.ClientErr() // already past the limit
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more than allowed tells an exact fit from too much
	}
	start := time.Now().UnixNano()
	b.readSince.Store(start)
	n, err := b.rc.Read(p)
	b.waited.Add(time.Now().UnixNano() - start)
	b.readSince.Store(0)
	if b.left -= int64(n); b.left < 0 {
		return n + int(b.left), b.fail(errBodyTooLarge)
	}
	switch {
	case err == io.EOF:
		b.finished()
	case err != nil:
		err = b.fail(err)
	}
	return n, err
}

// Close closes the body.
func (b *clientBody) Close() error {
	b.detach()
	return b.rc.Close()
}

// detach marks the request as handled. From then on the connection's deadline is left
// alone: it may be serving the client's next request. (httputil.ReverseProxy never closes
// the body it was given, and a transport goroutine may still be reading it.)
func (b *clientBody) detach() {
	b.mu.Lock()
	b.detached = true
	b.mu.Unlock()
}

// ClientErr returns the error reading the body failed with, or nil.
func (b *clientBody) ClientErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Waited returns how long readers have waited for the client, a read in progress included.
func (b *clientBody) Waited() time.Duration {
	w := b.waited.Load()
	if since := b.readSince.Load(); since != 0 {
		w += time.Now().UnixNano() - since
	}
	return time.Duration(w)
}

func (b *clientBody) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = fmt.Errorf("%w: %w", resilience.ErrClientBody, err)
	}
	return b.err
}

// finished lifts the body timeout once the whole body is in. It must: the server watches
// the connection from then on, and a deadline passing while the backend is still working
// on its answer would end the request as if the client had gone.
func (b *clientBody) finished() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deadline && !b.detached {
		_ = http.NewResponseController(b.w).SetReadDeadline(time.Time{})
		b.deadline = false
	}
}

// classify says why a request failed through its client's fault, or reports false when
// the failure is the backend's.
func classify(req *http.Request, body *clientBody, err error) (clientReason, bool) {
	cerr := body.ClientErr()
	if cerr == nil && errors.Is(err, resilience.ErrClientBody) {
		cerr = err
	}
	if cerr != nil {
		var ne net.Error
		switch {
		case errors.Is(cerr, errBodyTooLarge):
			return bodyTooLarge, true
		case errors.Is(cerr, os.ErrDeadlineExceeded), errors.As(cerr, &ne) && ne.Timeout():
			return bodyTimeout, true
		case errors.Is(cerr, io.ErrUnexpectedEOF), errors.Is(cerr, net.ErrClosed),
			errors.Is(cerr, syscall.ECONNRESET), errors.Is(cerr, context.Canceled):
			return clientClosed, true
		}
		return bodyMalformed, true
	}
	if req.Context().Err() != nil {
		return clientClosed, true
	}
	return 0, false
}
