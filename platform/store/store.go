// Package store opens Ficus's databases and keeps modules inside their own tables.
//
// Every database is reached through gorm. SQLite (the zero-setup default) is opened in WAL mode
// with a busy timeout, foreign keys on and BEGIN IMMEDIATE write transactions, so concurrent
// writers queue instead of failing with "database is locked".
//
// A module reaches the database only through its Handle, which refuses statements on another
// module's tables: tables are named after their module ("inventory_items"), and the guard
// installed by Open checks every statement a handle makes. Platform tables ("ficus_outbox")
// are open to every module.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// ErrBoundary is returned for a statement a module makes on another module's table.
var ErrBoundary = errors.New("module boundary violation")

// PlatformPrefix starts the names of tables every module may use (outbox, idempotency keys,
// migrations).
const PlatformPrefix = "ficus_"

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Resolve maps a relative SQLite path to a real one. Default: as given.
	Resolve func(string) string
	// BusyTimeout is how long a SQLite writer waits for the lock. Default 10s.
	BusyTimeout time.Duration
	// Modules names the modules whose tables the guard protects from each other.
	Modules []string
	// MaxOpenConns bounds the connection pool. Default 4: SQLite has one writer at a time, and WAL readers need few.
	MaxOpenConns int
}

// Open opens the database named by dsn ("sqlite:PATH"; "postgres://…" is refused for now) and
// installs the module guard.
func Open(ctx context.Context, dsn string, opts Options) (*gorm.DB, error) {
	if opts.BusyTimeout == 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = 4
	}
	var dialector gorm.Dialector
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if opts.Resolve != nil {
			path = opts.Resolve(path)
		}
		if path != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, fmt.Errorf("creating database directory: %w", err)
			}
		}
		q := fmt.Sprintf("file:%s?_journal_mode=WAL&_busy_timeout=%d&_foreign_keys=on&_txlock=immediate&_synchronous=NORMAL",
			path, opts.BusyTimeout.Milliseconds())
		dialector = sqlite.Open(q)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return nil, errors.New("opening database: PostgreSQL is not supported by this build yet; use sqlite:PATH")
	default:
		return nil, fmt.Errorf("opening database: unsupported DSN %q (want sqlite:PATH)", dsn)
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Default.LogMode(logger.Silent),
		TranslateError:         true,
		SkipDefaultTransaction: true,
		PrepareStmt:            true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
	sqlDB.SetMaxIdleConns(opts.MaxOpenConns)
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("opening database: %w", err)
	}
	if strings.HasPrefix(dsn, "sqlite:") {
		// SQLite has one writer at a time. Writers queue here, in Go, in arrival order,
		// rather than in SQLite's busy handler, which sleeps and retries and lets an unlucky
		// writer starve for seconds under load.
		if err := db.Use(&writeLock{sem: make(chan struct{}, 1)}); err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("opening database: %w", err)
		}
	}
	if err := installGuard(db, opts.Modules); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return db, nil
}

// Close closes db's connection pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

type txKey struct{}

// Handle returns module's handle on db: every statement made through it (or through a
// transaction begun from it) on another module's tables fails with ErrBoundary.
func Handle(db *gorm.DB, module string) *gorm.DB {
	return db.Set(moduleSetting, module).Session(&gorm.Session{})
}

// Conn returns the handle to use for a statement in ctx: the transaction ctx carries, under
// h's module, or h itself.
func Conn(ctx context.Context, h *gorm.DB) *gorm.DB {
	if tx, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		if m, ok := h.Get(moduleSetting); ok {
			return tx.Set(moduleSetting, m).Session(&gorm.Session{Context: ctx})
		}
		return tx.Session(&gorm.Session{Context: ctx})
	}
	return h.WithContext(ctx)
}

// InTx runs fn in a write transaction on h. If ctx already carries a transaction, fn joins
// it, so several modules' work commits or rolls back as one; the ctx fn receives carries the
// transaction for the modules it calls. On SQLite, write transactions of one process take
// turns in arrival order; every write should go through InTx.
func InTx(ctx context.Context, h *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	if _, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return fn(ctx, Conn(ctx, h))
	}
	if wl, ok := h.Config.Plugins[writeLockName].(*writeLock); ok {
		select {
		case wl.sem <- struct{}{}:
			defer func() { <-wl.sem }()
		case <-ctx.Done():
			return fmt.Errorf("waiting for the write lock: %w", ctx.Err())
		}
	}
	return h.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return fn(context.WithValue(ctx, txKey{}, tx), tx)
	})
}

const writeLockName = "ficus:write_lock"

// writeLock serialises a SQLite database's write transactions in the process. It is a gorm
// plugin so it travels with the *gorm.DB, with no package state.
type writeLock struct{ sem chan struct{} }

func (*writeLock) Name() string                 { return writeLockName }
func (*writeLock) Initialize(db *gorm.DB) error { return nil }

// InTransaction reports whether ctx carries a transaction.
func InTransaction(ctx context.Context) bool {
	_, ok := ctx.Value(txKey{}).(*gorm.DB)
	return ok
}
