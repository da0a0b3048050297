package facade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"time"
)

// ShutdownTimeout caps how long Serve waits for requests in flight once its context is done.
const ShutdownTimeout = 10 * time.Second

// serveGCPercent is the garbage collector's target while Serve serves, when GOGC is not
// set. The facade's live heap is small (a few MB: route tables, pooled connections and
// buffers) and nearly everything it allocates lives for one request, so at the default of
// 100 it collects some 30 times a second under load, for about 6% of its CPU; at 400 the
// heap may grow to five times the live heap, still a few tens of MB (about 10 MB more RSS),
// and collecting costs about 1%. See docs/bench.md.
const serveGCPercent = 400

// Serve serves the proxy on proxyLn and the admin API on adminLn until ctx is done, then
// marks the facade as draining and shuts both servers down gracefully, waiting up to
// ShutdownTimeout for requests in flight. It returns the first error either server hit.
//
// Unless the environment (Options.Getenv) sets GOGC, Serve sets the garbage collector's
// target to 400 while it serves (debug.SetGCPercent), and restores it when it returns.
func (f *Facade) Serve(ctx context.Context, proxyLn, adminLn net.Listener) error {
	if f.gcPercent > 0 {
		defer debug.SetGCPercent(debug.SetGCPercent(f.gcPercent))
	}
	proxy := &http.Server{
		Handler:           f.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          f.proxy.ErrorLog,
	}
	admin := &http.Server{
		Handler:           f.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          f.proxy.ErrorLog,
	}
	errs := make(chan error, 2)
	go func() { errs <- serveOn(proxy, proxyLn, "facade") }()
	go func() { errs <- serveOn(admin, adminLn, "admin") }()

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	f.Drain()
	f.log.Info("facade shutting down; draining requests in flight", "timeout", ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- shutdown(sctx, proxy, "facade") }()
	go func() { done <- shutdown(sctx, admin, "admin") }()
	first = errors.Join(first, <-done, <-done)
	f.Close()
	return first
}

func serveOn(s *http.Server, ln net.Listener, name string) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s on %s: %w", name, ln.Addr(), err)
	}
	return nil
}

func shutdown(ctx context.Context, s *http.Server, name string) error {
	if err := s.Shutdown(ctx); err != nil {
		s.Close()
		return fmt.Errorf("shutting down %s: %w", name, err)
	}
	return nil
}
