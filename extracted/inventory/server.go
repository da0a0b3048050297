package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/inventory/internal/httpapi"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Options tune Open. The zero value is ready to use; each field's comment gives its default.
type Options struct {
	// Logger receives request errors. Default: none logged.
	Logger *slog.Logger
	// Resolve maps a relative SQLite path to a real one. Default: as given.
	Resolve func(string) string
	// DryRun verifies the facade's dry-run header: a verified write runs and is rolled back
	// (platform/dryrun). Default nil: every dry-run header is refused (403).
	DryRun *dryrun.Verifier
}

// Server is the inventory service assembled: its database, migrated, its domain API and its
// HTTP API. cmd/ficus runs its outbox relay and its retention pruner beside it.
type Server struct {
	// DB is the service's own database.
	DB *gorm.DB
	// Inventory is the domain API.
	Inventory *Service

	echo *echo.Echo
}

// Open opens the service's database at dsn ("sqlite:PATH" or "postgres://…"), applies its
// migrations (the service's tables and the platform's outbox), and builds its HTTP API.
func Open(ctx context.Context, dsn string, opts Options) (*Server, error) {
	gdb, err := store.Open(ctx, dsn, store.Options{Resolve: opts.Resolve, Modules: []string{Module}})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s, err := assemble(ctx, gdb, opts)
	if err != nil {
		_ = store.Close(gdb)
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return s, nil
}

func assemble(ctx context.Context, gdb *gorm.DB, opts Options) (*Server, error) {
	for _, migrate := range []func(context.Context, *gorm.DB) error{outbox.Migrate, Migrate} {
		if err := migrate(ctx, gdb); err != nil {
			return nil, err
		}
	}
	s := &Server{DB: gdb, Inventory: New(gdb)}
	s.echo = web.New(opts.Logger, func() error {
		sqlDB, err := gdb.DB()
		if err != nil {
			return err
		}
		return sqlDB.Ping()
	})
	// Every route honours the dry-run header; nothing in them waits, so the unit of work a
	// dry run holds is short.
	httpapi.Register(s.echo.Group("", dryrun.Middleware(gdb, opts.DryRun)), s.Inventory)
	return s, nil
}

// Handler serves the inventory part of the shop's HTTP contract, /healthz and /readyz.
func (s *Server) Handler() http.Handler { return s.echo }

// ServeMetrics adds h (a Prometheus handler) at /metrics.
func (s *Server) ServeMetrics(h http.Handler) { s.echo.GET("/metrics", echo.WrapHandler(h)) }

// Close closes the database.
func (s *Server) Close() error { return store.Close(s.DB) }
