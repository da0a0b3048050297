package facade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout caps how long Serve waits for requests in flight once its context is done.
const ShutdownTimeout = 10 * time.Second

// Serve serves the proxy on proxyLn and the admin API on adminLn until ctx is done, then
// marks the facade as draining and shuts both servers down gracefully, waiting up to
// ShutdownTimeout for requests in flight. It returns the first error either server hit.
func (f *Facade) Serve(ctx context.Context, proxyLn, adminLn net.Listener) error {
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
