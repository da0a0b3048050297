// Package sqlite is the SQLite engine behind platform/store: how a SQLite database is opened
// (WAL, a busy timeout, foreign keys, BEGIN IMMEDIATE, pragmas per connection), how its
// statements stay prepared (stmtPool), and how its writers take turns and share commits
// (writeQueue). Nothing outside platform/store uses it directly: modules see only the store.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
	gormsqlite "gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// BusyTimeout is how long a connection waits for SQLite's lock (another process
	// writing). Writers of this process queue in the write queue instead. Default 10s.
	BusyTimeout time.Duration
	// MaxOpenConns bounds the connection pool. Default 4: SQLite has one writer at a time,
	// and WAL readers need few.
	MaxOpenConns int
}

// Engine is an open SQLite database: its connection pool, its prepared statements and its
// write queue.
type Engine struct {
	path  string
	db    *sql.DB
	pool  *stmtPool
	queue *writeQueue
}

// Open opens (creating it and its directory if need be) the SQLite database at path, or an
// in-memory one for ":memory:".
func Open(ctx context.Context, path string, opts Options) (*Engine, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 4
	}
	if path == "" {
		return nil, fmt.Errorf("opening SQLite database: empty path")
	}
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("opening SQLite database %s: creating its directory: %w", path, err)
		}
	}
	// _txlock=immediate: a write transaction takes SQLite's write lock when it begins, not
	// at its first write, so two transactions never both read and then deadlock upgrading.
	dsn := fmt.Sprintf("file:%s?_journal_mode=WAL&_busy_timeout=%d&_foreign_keys=on&_txlock=immediate&_synchronous=NORMAL",
		path, opts.BusyTimeout.Milliseconds())
	db := sql.OpenDB(connector{dsn: dsn})
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening SQLite database %s: %w", path, err)
	}
	return &Engine{path: path, db: db, pool: newStmtPool(db), queue: newWriteQueue()}, nil
}

// Name is "sqlite".
func (*Engine) Name() string { return "sqlite" }

// Dialector is gorm's SQLite dialect over the engine's statement pool, so that every
// statement gorm makes, in transactions too, runs prepared.
func (e *Engine) Dialector() gorm.Dialector {
	return gormsqlite.New(gormsqlite.Config{Conn: e.pool})
}

// Write runs fn in a turn of the engine's write queue: see writeQueue. fn gets the context
// its statements must run under and the transaction, begun from db, that its turn shares.
func (e *Engine) Write(ctx context.Context, db *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	return e.queue.run(ctx, db, fn)
}

// writersWaiting reports how many writers are queued for their turn.
func (e *Engine) writersWaiting() int { return int(e.queue.waiting.Load()) }

// Close closes the prepared statements and the connection pool.
func (e *Engine) Close() error {
	e.pool.close()
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("closing SQLite database %s: %w", e.path, err)
	}
	return nil
}

// connector opens SQLite connections with the pragmas the DSN cannot set.
type connector struct{ dsn string }

// connPragma runs on every new connection. temp_store=MEMORY keeps statement journals (the
// undo log of one statement inside a transaction, which nearly every write here needs) in
// small allocations: otherwise each is one 64 KiB buffer, malloc'd and freed per statement,
// and glibc hands the memory back to the kernel and faults it in again every time.
const connPragma = "PRAGMA temp_store = MEMORY"

func (c connector) Connect(context.Context) (driver.Conn, error) {
	return c.Driver().Open(c.dsn)
}

func (connector) Driver() driver.Driver {
	return &sqlite3.SQLiteDriver{ConnectHook: func(conn *sqlite3.SQLiteConn) error {
		if _, err := conn.Exec(connPragma, nil); err != nil {
			return fmt.Errorf("%s: %w", connPragma, err)
		}
		return nil
	}}
}
