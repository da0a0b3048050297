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
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
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
		dialector = sqlite.New(sqlite.Config{Conn: sql.OpenDB(sqliteConnector{dsn: q})})
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return nil, errors.New("opening database: PostgreSQL is not supported by this build yet; use sqlite:PATH")
	default:
		return nil, fmt.Errorf("opening database: unsupported DSN %q (want sqlite:PATH)", dsn)
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Default.LogMode(logger.Silent),
		TranslateError:         true,
		SkipDefaultTransaction: true,
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
		// Statements stay prepared per connection, in transactions too (see stmtPool).
		pool := newStmtPool(sqlDB)
		db.ConnPool, db.Statement.ConnPool = pool, pool
		// SQLite has one writer at a time. Writers queue here, in Go, in arrival order,
		// rather than in SQLite's busy handler, which sleeps and retries and lets an unlucky
		// writer starve for seconds under load.
		if err := db.Use(newWriteLock()); err != nil {
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

// sqliteConnector opens SQLite connections with the pragmas the DSN cannot set.
type sqliteConnector struct{ dsn string }

// connPragmas run on every new connection. temp_store=MEMORY keeps statement journals (the
// undo log of one statement inside a transaction, which nearly every write here needs) in
// small allocations: otherwise each is one 64 KiB buffer, malloc'd and freed per statement,
// and glibc hands the memory back to the kernel and faults it in again every time.
var connPragmas = []string{"PRAGMA temp_store = MEMORY"}

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	return c.Driver().Open(c.dsn)
}

func (sqliteConnector) Driver() driver.Driver {
	return &sqlite3.SQLiteDriver{ConnectHook: func(conn *sqlite3.SQLiteConn) error {
		for _, p := range connPragmas {
			if _, err := conn.Exec(p, nil); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}}
}

// Close closes db's connection pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	if p, ok := db.ConnPool.(*stmtPool); ok {
		p.close()
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
		// Session copies the statement, settings and all, so the module is set on the copy.
		c := tx.Session(&gorm.Session{Context: ctx})
		if m, ok := h.Get(moduleSetting); ok {
			c.Statement.Settings.Store(moduleSetting, m)
		}
		return c
	}
	return h.WithContext(ctx)
}

// InTx runs fn in a write transaction on h. If ctx already carries a transaction, fn joins
// it, so several modules' work commits or rolls back as one; the ctx fn receives carries the
// transaction for the modules it calls. On SQLite, write transactions of one process take
// turns in arrival order, and turns that queue up share a commit (see writeLock); every
// write should go through InTx. InTx returns once fn's work has committed, or failed.
func InTx(ctx context.Context, h *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	if _, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return fn(ctx, Conn(ctx, h))
	}
	if wl, ok := h.Config.Plugins[writeLockName].(*writeLock); ok {
		return wl.run(ctx, h, fn)
	}
	return h.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ctx := context.WithValue(ctx, txKey{}, tx)
		// fn gets the transaction bound to the context it gets, as Conn would give it.
		return fn(ctx, tx.WithContext(ctx))
	})
}

// OnCommit makes fn run after every write transaction of db's InTx commits, so a reader of
// what the writers add (an outbox relay) can look at once instead of polling. fn runs on the
// committing goroutine and must not block; it replaces any earlier fn. It needs the SQLite
// write queue, and reports false where db has none.
func OnCommit(db *gorm.DB, fn func()) bool {
	wl, ok := db.Config.Plugins[writeLockName].(*writeLock)
	if ok {
		wl.committed.Store(&fn)
	}
	return ok
}
