package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/extracted/payments"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/retention"
)

// serveInventoryCommand runs the extracted inventory service.
func serveInventoryCommand() *command {
	var path, listenAddr string
	return &command{
		name:    "inventory",
		summary: "the extracted inventory service: its HTTP API, its own database and outbox relay",
		about: `Runs the inventory service extracted from the monolith: the inventory part of the shop's
HTTP contract on services.inventory.listen, on its own database (services.inventory.database,
migrated at start), and the relay that publishes its stock events to the bus (source
/services/inventory). /metrics serves its Prometheus metrics.`,
		examples: []string{"ficus serve inventory", "ficus serve inventory -listen 127.0.0.1:18082"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&listenAddr, "listen", "", "listen `ADDR` (default: services.inventory.listen from the config)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			return runService(ctx, e, path, listenAddr, "inventory", func(ctx context.Context, cfg *config.Config, svc config.Service, logger *slog.Logger, reg prometheus.Registerer) (runningService, error) {
				verifier, err := dryRunVerifier(cfg, e.getenv, logger)
				if err != nil {
					return runningService{}, err
				}
				srv, err := inventory.Open(ctx, svc.Database, inventory.Options{Logger: logger, Resolve: cfg.Resolve, DryRun: verifier})
				if err != nil {
					return runningService{}, err
				}
				return runningService{db: srv.DB, handler: srv.Handler(), serveMetrics: srv.ServeMetrics, close: srv.Close}, nil
			})
		},
	}
}

// servePaymentsCommand runs the extracted payments service.
func servePaymentsCommand() *command {
	var path, listenAddr string
	return &command{
		name:    "payments",
		summary: "the extracted payments service: its HTTP API, its own database, its customer copy and outbox relay",
		about: `Runs the payments service extracted from the monolith: the payments part of the shop's
HTTP contract on services.payments.listen, on its own database (services.payments.database,
migrated at start), and the relay that publishes its payment events to the bus (source
/services/payments).

Customers stay in the monolith: the service keeps a copy of their emails and credit limits,
fed by the monolith's customer events from the bus (it waits for the bus, and catches up
from where it left off). GET /readyz/customers answers 200 once that copy has applied every
customer event the bus holds, 503 before. /metrics serves its Prometheus metrics, the copy's
backlog among them.`,
		examples: []string{"ficus serve payments", "ficus serve payments -listen 127.0.0.1:18083"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&listenAddr, "listen", "", "listen `ADDR` (default: services.payments.listen from the config)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			return runService(ctx, e, path, listenAddr, "payments", func(ctx context.Context, cfg *config.Config, svc config.Service, logger *slog.Logger, reg prometheus.Registerer) (runningService, error) {
				verifier, err := dryRunVerifier(cfg, e.getenv, logger)
				if err != nil {
					return runningService{}, err
				}
				srv, err := payments.Open(ctx, svc.Database, payments.Options{Logger: logger, Resolve: cfg.Resolve, Registerer: reg, DryRun: verifier})
				if err != nil {
					return runningService{}, err
				}
				follow := func(ctx context.Context) { followCustomers(ctx, cfg.Events, srv, reg, logger) }
				return runningService{db: srv.DB, handler: srv.Handler(), serveMetrics: srv.ServeMetrics, close: srv.Close,
					background: follow, pruneRules: []retention.Rule{idempotency.PruneRule(cfg.Retention.Idempotency.D()),
						inbox.PruneRule(cfg.Retention.Inbox.D())}}, nil
			})
		},
	}
}

// runningService is an opened extracted service, as runService runs it.
type runningService struct {
	db           *gorm.DB
	handler      http.Handler
	serveMetrics func(http.Handler)
	close        func() error
	// background, when set, runs beside the server until its context ends.
	background func(ctx context.Context)
	// pruneRules are the retention rules of the service's bookkeeping tables besides the
	// outbox's.
	pruneRules []retention.Rule
}

// runService runs the extracted service name: opens it, serves its HTTP API and metrics on
// its listener, and runs its outbox relay, its retention pruner and its own background work
// beside the server until ctx ends.
func runService(ctx context.Context, e env, path, listenAddr, name string,
	open func(context.Context, *config.Config, config.Service, *slog.Logger, prometheus.Registerer) (runningService, error)) error {
	inherited, err := listener.Inherit(e.getenv)
	if err != nil {
		return err
	}
	defer inherited.Close()
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	svc, ok := cfg.Services[name]
	if !ok {
		return fmt.Errorf("%s has no services.%s: add one, as in services: { %s: { listen: 127.0.0.1:PORT, database: sqlite:data/%s.db } }",
			path, name, name, name)
	}
	logger := newLogger(e.stderr, e.getenv).With("component", name)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := open(ctx, cfg, svc, logger, reg)
	if err != nil {
		return err
	}
	defer s.close()
	s.serveMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	// The relay, the pruner and the service's own work run beside the server and stop
	// after it.
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { runRelay(bgCtx, cfg.Events, s.db, name, reg, logger) })
	pruner := newPruner(cfg, s.db, name, reg, logger, append([]retention.Rule{outbox.PruneRule(cfg.Retention.Outbox.D())}, s.pruneRules...)...)
	bg.Go(func() {
		if err := pruner.Run(bgCtx); err != nil {
			logger.Error("retention: pruning is off", "err", err)
		}
	})
	if s.background != nil {
		bg.Go(func() { s.background(bgCtx) })
	}
	defer func() { stopBackground(); bg.Wait() }()

	if listenAddr == "" {
		listenAddr = svc.Listen
	}
	ln, err := listen(ctx, inherited, name, listenAddr)
	if err != nil {
		return err
	}
	logger.Info("serving", "addr", ln.Addr().String(), "database", config.Redact(svc.Database))
	return serveHTTP(ctx, ln, s.handler, logger)
}

// followCustomers feeds the payments service's customer copy from the bus until ctx ends. It
// waits for the bus to be reachable, and starts again after a failure, with a pause that
// grows to 30s: the durable consumer resumes where it left off, so nothing is missed.
func followCustomers(ctx context.Context, events config.Events, srv *payments.Server, reg prometheus.Registerer, logger *slog.Logger) {
	b, err := bus.Connect(ctx, events, bus.Options{Name: "payments-customers", Logger: logger, Registerer: reg})
	if err != nil {
		if ctx.Err() == nil {
			logger.Error("event bus unreachable; the customer copy is not kept up to date", "err", err)
		}
		return
	}
	defer b.Close()
	logger.Info("customer copy following the bus", "bus", bus.URL(events), "consumer", payments.CustomersConsumer)
	pause := time.Second
	for {
		err := srv.FollowCustomers(ctx, b)
		if ctx.Err() != nil {
			return
		}
		logger.Error("customer copy stopped following the bus; starting again", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// dryRunVerifier loads the dry-run secret the service shares with the facade (dry_run in the
// config: the variable, else the file, else a new one written there) and returns the
// verifier of the facade's dry-run header.
func dryRunVerifier(cfg *config.Config, getenv func(string) string, logger *slog.Logger) (*dryrun.Verifier, error) {
	secret, source, err := dryrun.LoadSecret(cfg, getenv)
	if err != nil {
		return nil, err
	}
	logger.Info("dry-run secret loaded; shadowed writes signed by the facade run and roll back", "source", source)
	return dryrun.NewVerifier(secret, cfg.DryRun.MaxAge.D(), nil), nil
}
