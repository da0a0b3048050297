package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// cmdServe runs one component.
func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"serve needs a component: facade | monolith | bus"}
	}
	switch args[0] {
	case "facade":
		return cmdServeFacade(ctx, args[1:], getenv, stdout, stderr)
	case "monolith":
		return cmdServeMonolith(ctx, args[1:], getenv, stdout, stderr)
	case "bus":
		return cmdServeBus(ctx, args[1:], getenv, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown component %q (want facade, monolith or bus)", args[0])}
}

func newLogger(w io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	if getenv("FICUS_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// cmdServeMonolith runs the modular monolith.
func cmdServeMonolith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve monolith", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file")
	listen := fs.String("listen", "", "listen address (default: monolith.listen from the config)")
	seed := fs.Bool("seed", false, "add demo customers and items if the database is empty")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, getenv).With("component", "monolith")
	m, err := monolith.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer m.Close()
	if *seed {
		demo, err := m.Seed(ctx)
		if err != nil {
			return err
		}
		logger.Info("demo data", "seeded", demo.Seeded, "customer_id", demo.CustomerID, "sku", demo.SKU)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.ServeMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		runRelay(relayCtx, cfg.Events, m.DB, "monolith", reg, logger)
	}()
	defer func() { stopRelay(); <-relayDone }()

	addr := cfg.Monolith.Listen
	if *listen != "" {
		addr = *listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("monolith: %w", err)
	}
	logger.Info("serving", "addr", ln.Addr().String(), "database", config.Redact(cfg.Monolith.Database))
	return serveHTTP(ctx, ln, m.Handler(), logger)
}

// serveHTTP serves h on ln until ctx is done, then drains in-flight requests for up to 10s.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

// runRelay publishes db's outbox to the bus until ctx is done. It waits for the bus to be
// reachable: events committed meanwhile stay in the outbox, nothing is lost.
func runRelay(ctx context.Context, events config.Events, db *gorm.DB, name string, reg prometheus.Registerer, logger *slog.Logger) {
	b, err := bus.Connect(ctx, events, bus.Options{Name: name, Logger: logger, Registerer: reg})
	if err != nil {
		if ctx.Err() == nil {
			logger.Error("event bus unreachable; events wait in the outbox", "err", err)
		}
		return
	}
	defer b.Close()
	relay := outbox.NewRelay(db, b, outbox.RelayOptions{Name: name, Registerer: reg, Logger: logger})
	// Woken by every commit rather than waiting for its next poll.
	store.OnCommit(db, relay.Notify)
	defer store.OnCommit(db, func() {})
	logger.Info("outbox relay running", "bus", bus.URL(events))
	if err := relay.Run(ctx); err != nil && ctx.Err() == nil {
		logger.Error("outbox relay stopped", "err", err)
	}
}
