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

	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/config"
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
