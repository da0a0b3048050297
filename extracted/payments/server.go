package payments

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/payments/internal/httpapi"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Options tune Open. The zero value is ready to use; each field's comment gives its default.
type Options struct {
	// Logger receives request errors and the customer consumer's failures. Default: discarded.
	Logger *slog.Logger
	// Resolve maps a relative SQLite path to a real one. Default: as given.
	Resolve func(string) string
	// Registerer receives the customer copy's metrics. Default: none registered.
	Registerer prometheus.Registerer
	// CustomerWait bounds how long a charge for a customer the copy has not received waits
	// for it while the copy is behind; after it the charge is 503 customer_not_yet_known.
	// Default 2s, at most 1m.
	CustomerWait time.Duration
	// CustomerGrace is how long a charge for a customer the copy has not received waits
	// even when the copy looks caught up, covering the moment between the monolith
	// committing a registration and the bus holding its event; after it the charge is 404
	// customer_not_found. Default 250ms, at most CustomerWait.
	CustomerGrace time.Duration
	// BacklogInterval is how often FollowCustomers measures the copy's backlog for the
	// metrics. Default 1s.
	BacklogInterval time.Duration
	// DryRun verifies the facade's dry-run header: a verified charge or refund runs and is
	// rolled back (platform/dryrun). Default nil: every dry-run header is refused (403).
	DryRun *dryrun.Verifier
}

func (o *Options) setDefaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CustomerWait <= 0 {
		o.CustomerWait = 2 * time.Second
	}
	if o.CustomerGrace <= 0 {
		o.CustomerGrace = 250 * time.Millisecond
	}
	if o.BacklogInterval <= 0 {
		o.BacklogInterval = time.Second
	}
	if o.CustomerWait > time.Minute {
		return fmt.Errorf("payments: CustomerWait %s is over 1m", o.CustomerWait)
	}
	if o.CustomerGrace > o.CustomerWait {
		return fmt.Errorf("payments: CustomerGrace %s is over CustomerWait %s", o.CustomerGrace, o.CustomerWait)
	}
	return nil
}

// Server is the payments service assembled: its database, migrated, its domain API and its
// HTTP API. FollowCustomers feeds its customer copy; cmd/ficus runs its outbox relay and
// its retention pruner beside it.
type Server struct {
	// DB is the service's own database.
	DB *gorm.DB
	// Payments is the domain API.
	Payments *Service

	opts      Options
	customers *customerCopy
	echo      *echo.Echo
}

// Open opens the service's database at dsn ("sqlite:PATH" or "postgres://…"), applies its
// migrations (the service's tables, and the platform's outbox, inbox and idempotency keys),
// and builds its HTTP API.
func Open(ctx context.Context, dsn string, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	gdb, err := store.Open(ctx, dsn, store.Options{Resolve: opts.Resolve, Modules: []string{Module}})
	if err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	s, err := assemble(ctx, gdb, opts)
	if err != nil {
		_ = store.Close(gdb)
		return nil, fmt.Errorf("payments: %w", err)
	}
	return s, nil
}

func assemble(ctx context.Context, gdb *gorm.DB, opts Options) (*Server, error) {
	for _, migrate := range []func(context.Context, *gorm.DB) error{outbox.Migrate, idempotency.Migrate, inbox.Migrate, Migrate} {
		if err := migrate(ctx, gdb); err != nil {
			return nil, err
		}
	}
	customers, err := newCustomerCopy(store.Handle(gdb, Module), opts)
	if err != nil {
		return nil, err
	}
	s := &Server{DB: gdb, Payments: newService(gdb, customers), opts: opts, customers: customers}
	s.echo = web.New(opts.Logger, func() error {
		sqlDB, err := gdb.DB()
		if err != nil {
			return err
		}
		return sqlDB.Ping()
	})
	httpapi.Register(s.echo.Group(""), s.Payments, idempotency.Middleware(gdb, idempotency.Options{}), dryrun.Middleware(gdb, opts.DryRun))
	// Not part of the shop's contract: the service's own, like /readyz, and hidden by the
	// facade's internal_paths (everything under /readyz).
	s.echo.GET("/readyz/customers", customers.serveStatus)
	return s, nil
}

// Handler serves the payments part of the shop's HTTP contract, /healthz, /readyz, and
// /readyz/customers (the customer copy's freshness: 200 when caught up, else 503).
func (s *Server) Handler() http.Handler { return s.echo }

// ServeMetrics adds h (a Prometheus handler) at /metrics.
func (s *Server) ServeMetrics(h http.Handler) { s.echo.GET("/metrics", echo.WrapHandler(h)) }

// FollowCustomers feeds the customer copy from the monolith's customer events on b, through
// the inbox, until ctx is done; while it runs the copy's freshness can be measured. Events
// that break their schema are parked in the dead-letter stream. It returns nil when ctx
// ends, and an error if the consumer cannot run.
func (s *Server) FollowCustomers(ctx context.Context, b *bus.Bus) error {
	if err := s.customers.follow(ctx, b, s.opts.BacklogInterval); err != nil {
		return fmt.Errorf("payments: following customers: %w", err)
	}
	return nil
}

// CustomerCopy measures the freshness of the customer copy now: caught_up, behind (with how
// many events), or unknown while FollowCustomers is not running.
func (s *Server) CustomerCopy(ctx context.Context) CopyStatus { return s.customers.status(ctx) }

// Close closes the database.
func (s *Server) Close() error { return store.Close(s.DB) }
