package facade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ficus-project/ficus/facade/guard"
)

// ShutdownTimeout caps how long Serve waits for requests in flight once its context is done.
const ShutdownTimeout = 10 * time.Second

// MaxHeaderBytes bounds a request's line and headers on the proxy and admin listeners;
// a longer head is answered 431.
const MaxHeaderBytes = 64 << 10

// Serve serves the proxy on proxyLn and the admin API on adminLn until ctx is done. Then it
// marks the facade as draining, shuts the proxy down gracefully, waiting up to
// ShutdownTimeout for requests in flight, and only then the admin API: /readyz answers 503
// throughout the drain, so load balancers see it. It returns the first error either server
// hit.
//
// Serve refuses an admin listener that other hosts can reach (not loopback) unless
// facade.admin.allow_remote is set, and closes both listeners. Both listeners are guarded
// against request smuggling (package guard): a request whose framing two HTTP parsers could
// read differently is answered 400 and its connection closed before a handler sees it.
func (f *Facade) Serve(ctx context.Context, proxyLn, adminLn net.Listener) error {
	if err := checkAdminAddr(adminLn.Addr(), f.Config().Facade.Admin.AllowRemote); err != nil {
		proxyLn.Close()
		adminLn.Close()
		return err
	}
	proxy, admin := f.servers()
	proxyLn, adminLn = f.guard(proxyLn, "facade"), f.guard(adminLn, "admin")
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

// servers returns the proxy's and the admin API's servers, each bounded in header size and in
// time: headers, idle connections, and the admin API's whole request.
func (f *Facade) servers() (proxy, admin *http.Server) {
	errLog := errorLog(f.log, f.logs)
	proxy = &http.Server{
		Handler: f.Handler(),
		// No ReadTimeout: it would also end long responses. The proxy bounds each request
		// body with facade.body_timeout (and its size with facade.max_body_bytes) instead.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	admin = &http.Server{
		Handler:           f.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // the admin API reads no bodies; it answers at once
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	return proxy, admin
}

// guard wraps ln in the request-smuggling guard, which logs what it refuses (at most a line
// a second) and, on the proxy listener, counts it as ficus_facade_rejected_total{reason=
// "bad_framing"}.
func (f *Facade) guard(ln net.Listener, listener string) net.Listener {
	refused := f.metrics.rejected.WithLabelValues("bad_framing")
	return guard.NewListener(ln, guard.Options{MaxHeaderBytes: MaxHeaderBytes,
		Rejected: func(remote net.Addr, status int, reason string) {
			if listener == "facade" {
				refused.Inc()
			}
			f.logs.log(f.log, slog.LevelWarn, "guard-"+listener, "request refused before routing",
				"listener", listener, "remote", remote.String(), "status", status, "reason", reason)
		}})
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
