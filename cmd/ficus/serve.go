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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/retention"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// serveCommand runs one component in the foreground.
func serveCommand() *command {
	return &command{
		name:    "serve",
		args:    "COMPONENT",
		summary: "run one component in the foreground: facade | monolith | inventory | payments | bus",
		about: `Runs one component in the foreground until interrupted (SIGINT or SIGTERM), then drains
requests in flight. ficus up runs each component this way, as its own process.

A parent process may pass a component its listening socket instead of letting it bind one:
the environment variable FICUS_LISTENERS names inherited file descriptors, as in
FICUS_LISTENERS=facade:3,admin:4 (names: facade, admin, monolith, inventory, payments, bus).`,
		examples: []string{"ficus serve monolith -seed", "ficus serve facade -listen 127.0.0.1:8080"},
		subs: []*command{serveFacadeCommand(), serveMonolithCommand(), serveInventoryCommand(), servePaymentsCommand(),
			serveBusCommand()},
	}
}

func newLogger(w io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	if getenv("FICUS_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// listen returns the listener the parent passed under name, or a new one on addr.
func listen(ctx context.Context, inherited *listener.Set, name, addr string) (net.Listener, error) {
	if ln := inherited.Take(name); ln != nil {
		return ln, nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the %s: %w", name, err)
	}
	return ln, nil
}

// serveMonolithCommand runs the modular monolith.
func serveMonolithCommand() *command {
	var path, listenAddr string
	var seed bool
	return &command{
		name:    "monolith",
		summary: "the modular monolith: the shop's HTTP API and its outbox relay",
		about: `Runs the modular monolith: every module's HTTP routes on one listener, and the outbox relay
that publishes the monolith's events to the bus (it waits for the bus; events committed
meanwhile stay in the outbox). /metrics serves its Prometheus metrics.

monolith.modules in config.yaml picks, per capability, the module in process (local) or the
extracted service (remote, through the backend of the same name). With any remote, orders
are placed by a saga (docs/saga.md); sagas an earlier run left unfinished resume at start,
and, with payments remote, the payments service's payment_captured events complete them.
A change to monolith.modules takes effect when the monolith restarts (ficus up restarts it).`,
		examples: []string{"ficus serve monolith", "ficus serve monolith -seed -listen 127.0.0.1:18081"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&listenAddr, "listen", "", "listen `ADDR` (default: monolith.listen from the config)")
			fs.BoolVar(&seed, "seed", false, "add the demo customers and items if the database is empty")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			inherited, err := listener.Inherit(e.getenv)
			if err != nil {
				return err
			}
			defer inherited.Close()
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			logger := newLogger(e.stderr, e.getenv).With("component", "monolith")
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			m, err := monolith.Open(ctx, cfg, monolith.Options{Logger: logger, Registerer: reg})
			if err != nil {
				return err
			}
			defer m.Close()
			if seed {
				demo, err := m.Seed(ctx)
				if err != nil {
					return err
				}
				logger.Info("demo data", "seeded", demo.Seeded, "customer_id", demo.CustomerID, "sku", demo.SKU)
			}
			m.ServeMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
			// The outbox relay, the sagas and the pruner run beside the server and stop after it.
			bgCtx, stopBackground := context.WithCancel(ctx)
			var bg sync.WaitGroup
			bg.Go(func() { runRelay(bgCtx, cfg.Events, m.DB, "monolith", reg, logger) })
			// Sagas an earlier run left (a crash, a restart) resume at once, whatever the mode.
			bg.Go(func() {
				if err := m.RunSagas(bgCtx); err != nil {
					logger.Error("order sagas stopped", "err", err)
				}
			})
			if cfg.Monolith.Modules["payments"] == config.ModuleRemote {
				bg.Go(func() { followPayments(bgCtx, cfg.Events, m, logger) })
			}
			pruner := newPruner(cfg, m.DB, "monolith", reg, logger,
				outbox.PruneRule(cfg.Retention.Outbox.D()), idempotency.PruneRule(cfg.Retention.Idempotency.D()),
				inbox.PruneRule(cfg.Retention.Inbox.D()))
			bg.Go(func() {
				if err := pruner.Run(bgCtx); err != nil {
					logger.Error("retention: pruning is off", "err", err)
				}
			})
			defer func() { stopBackground(); bg.Wait() }()

			if listenAddr == "" {
				listenAddr = cfg.Monolith.Listen
			}
			ln, err := listen(ctx, inherited, "monolith", listenAddr)
			if err != nil {
				return err
			}
			logger.Info("serving", "addr", ln.Addr().String(), "database", config.Redact(cfg.Monolith.Database))
			return serveHTTP(ctx, ln, m.Handler(), logger)
		},
	}
}

// serveHTTP serves h on ln with the time limits of web.NewServer until ctx is done, then
// drains in-flight requests for up to 10s.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	// Header, body and idle time limits: a client too slow to send its body gets a 408.
	srv := web.NewServer(h, web.ServerOptions{Logger: logger})
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

// newPruner returns the pruner that keeps db's bookkeeping tables within the retention
// config.yaml sets (see docs/events.md, "Retention and disk budget").
func newPruner(cfg *config.Config, db *gorm.DB, name string, reg prometheus.Registerer, logger *slog.Logger, rules ...retention.Rule) *retention.Pruner {
	return retention.NewPruner(db, retention.Options{Name: name, Registerer: reg, Logger: logger,
		Interval: cfg.Retention.Interval.D(), BatchSize: cfg.Retention.Batch, MaxBatches: cfg.Retention.MaxBatches}, rules...)
}

// followPayments completes the order sagas' charges from the payments service's events until
// ctx is done. It waits for the bus to be reachable: meanwhile the sagas ask the payments
// service itself what became of a charge whose answer they lost.
func followPayments(ctx context.Context, events config.Events, m *monolith.Monolith, logger *slog.Logger) {
	b, err := bus.Connect(ctx, events, bus.Options{Name: "monolith-orders", Logger: logger})
	if err != nil {
		if ctx.Err() == nil {
			logger.Error("event bus unreachable; sagas learn of captures from the payments service alone", "err", err)
		}
		return
	}
	defer b.Close()
	if err := m.FollowPayments(ctx, b, logger); err != nil && ctx.Err() == nil {
		logger.Error("following payment events stopped", "err", err)
	}
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
