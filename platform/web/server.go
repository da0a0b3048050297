package web

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ficus-project/ficus/platform/problem"
)

// ServerOptions bound what one client may hold of a server. The zero value is ready to use;
// each field's comment gives its default.
type ServerOptions struct {
	// ReadHeaderTimeout is how long a request's headers may take to arrive. Default 10s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout is how long a request's body may take to arrive in full, counted from when
	// the handler starts; a body still arriving then is answered 408 (code body_timeout)
	// and its connection closed. Default 30s.
	BodyTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next request.
	// Default 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers. Default 64 KiB.
	MaxHeaderBytes int
	// Logger receives the server's own errors (bad TLS, hijack failures) at WARN. Default:
	// the standard library's logger.
	Logger *slog.Logger
}

func (o *ServerOptions) setDefaults() {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
}

// NewServer returns the http.Server every Ficus server should run h with: headers, bodies and
// idle connections are bounded in time, headers in size, so a slow or stalled client cannot
// hold a connection, a goroutine or memory for long. Serve it with Serve(ln) and stop it with
// Shutdown, as any http.Server.
func NewServer(h http.Handler, opts ServerOptions) *http.Server {
	opts.setDefaults()
	srv := &http.Server{
		Handler:           LimitBodyTime(h, opts.BodyTimeout),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
	}
	if opts.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)
	}
	return srv
}

// ErrBodyTimeout is the error a request body's Read returns once the body took longer than
// its time limit to arrive (see LimitBodyTime).
var ErrBodyTimeout = errors.New("the request body took too long to arrive")

// LimitBodyTime bounds how long the body of each request to h may take to arrive: d after h
// starts, reading the body fails with ErrBodyTimeout (handlers built on Bind or ReadBody
// answer 408). It sets the connection's read deadline, which is what frees a connection
// whose client stopped sending; where the connection has none (a test recorder), only the
// error is given. Requests without a body are not touched: their connection is already being
// watched for the client going away, and a deadline would cut that watch short.
func LimitBodyTime(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(d)
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, deadline: deadline, connBound: rc.SetReadDeadline(deadline) == nil}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody fails reads after the deadline, and lifts the connection's deadline once the
// body is read, so that a handler working on after that is not cut off.
type deadlineBody struct {
	io.ReadCloser
	rc        *http.ResponseController
	deadline  time.Time
	connBound bool
	done      bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	if !time.Now().Before(b.deadline) {
		return 0, ErrBodyTimeout
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		b.done = true
		if b.connBound {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(b.deadline)):
		return n, fmt.Errorf("%w: %w", ErrBodyTimeout, err)
	}
	return n, err
}

// bodyTimeout is the 408 problem for a body that took too long. The connection cannot carry
// another request (part of this one is still unread), so the response says it closes.
func bodyTimeout(w http.ResponseWriter) *problem.Problem {
	w.Header().Set("Connection", "close")
	return problem.New(http.StatusRequestTimeout, "body_timeout", "the request body took too long to arrive")
}
