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

// Serve serves the proxy on proxyLn and the admin API on adminLn until ctx is done. Then it
// marks the facade as draining, shuts the proxy down gracefully, waiting up to
// ShutdownTimeout for requests in flight, and only then the admin API: /readyz answers 503
// throughout the drain, so load balancers see it. It returns the first error either server
// hit.
//
// Serve refuses an admin listener that other hosts can reach (not loopback) unless
// facade.admin.allow_remote is set, and closes both listeners.
func (f *Facade) Serve(ctx context.Context, proxyLn, adminLn net.Listener) error {
	if err := checkAdminAddr(adminLn.Addr(), f.Config().Facade.Admin.AllowRemote); err != nil {
		proxyLn.Close()
		adminLn.Close()
		return err
	}
	errLog := errorLog(f.log, f.logs)
	proxy := &http.Server{
		Handler: f.Handler(),
		// No ReadTimeout: it would also end long responses. The proxy bounds each request
		// body with facade.body_timeout instead.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	admin := &http.Server{
		Handler:           f.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // the admin API reads no bodies; it answers at once
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
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
	first = errors.Join(first, shutdown(sctx, proxy, "facade"))
	first = errors.Join(first, shutdown(sctx, admin, "admin"))
	f.Close()
	return first
}

// checkAdminAddr refuses an admin address other hosts can reach unless that is allowed.
func checkAdminAddr(addr net.Addr, allowRemote bool) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || allowRemote || tcp.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("serving the admin API on %s: other hosts can reach that address, and the admin API shows the config "+
		"and the route table; listen on 127.0.0.1, or set facade.admin.allow_remote: true", addr)
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
