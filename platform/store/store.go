// Package store opens Ficus's databases, runs their units of work and keeps modules inside
// their own tables. It is the one seam between the code that stores things and the engine
// that stores them: SQLite (the zero-setup default, package sqlite) or PostgreSQL (package
// postgres). Modules and domain code see *gorm.DB handles and the functions of this package,
// never the engine. docs/storage.md describes the seam and how the engines differ.
//
// # Units of work
//
// A write is a unit of work: Write runs a function in one write transaction and returns once
// it has committed or rolled back. A unit of work may span modules: Write puts the open
// transaction in the context it hands the function, and a Write (or Conn) made with that
// context, by whichever module, joins it instead of beginning another. That is how the
// monolith places an order in one local transaction across the orders, customers, inventory
// and payments modules, each reaching the others only through its ports. InTx tells whether a
// context carries an open unit of work, and RefuseInTx keeps HTTP calls out of one: while it
// is open, SQLite's writers all wait for it, and PostgreSQL holds its row locks.
//
// # Module boundaries
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
	"strings"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/store/postgres"
	"github.com/ficus-project/ficus/platform/store/sqlite"
)

// ErrBoundary is returned for a statement a module makes on another module's table.
var ErrBoundary = errors.New("module boundary violation")

// PlatformPrefix starts the names of tables every module may use (outbox, idempotency keys,
// migrations).
const PlatformPrefix = "ficus_"

// engine is a database engine behind the store: the SQLite one or the PostgreSQL one.
type engine interface {
	// Name is "sqlite" or "postgres"; migrations pick per-engine files by it.
	Name() string
	// Dialector is gorm's dialect for the engine, on the engine's connection pool.
	Dialector() gorm.Dialector
	// Write runs fn in a write transaction begun from db and returns once that transaction
	// has committed, or fn's work has been rolled back. fn gets the context its statements
	// must run under. The engine decides how writers share the database: SQLite's take
	// turns and share commits, PostgreSQL's run side by side and are retried after a
	// serialization failure or a deadlock.
	Write(ctx context.Context, db *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error
	// Close closes the engine's connections.
	Close() error
}

// keyLocker is an engine whose write transactions run side by side, so that some must be
// told to wait for each other (see lockKeys).
type keyLocker interface {
	LockKeys(tx *gorm.DB, keys []string) error
}

var (
	_ engine    = (*sqlite.Engine)(nil)
	_ engine    = (*postgres.Engine)(nil)
	_ keyLocker = (*postgres.Engine)(nil)
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Resolve maps a relative SQLite path to a real one. Default: as given.
	Resolve func(string) string
	// BusyTimeout is how long a SQLite connection waits for a lock another process holds.
	// Default 10s.
	BusyTimeout time.Duration
	// Modules names the modules whose tables the guard protects from each other.
	Modules []string
	// MaxOpenConns bounds the connection pool. Default 4 on SQLite (one writer at a time;
	// WAL readers need few), 16 on PostgreSQL.
	MaxOpenConns int
}

// Open opens the database named by dsn, "sqlite:PATH" or "postgres://USER:PASS@HOST:PORT/DB",
// and installs the module guard. Its errors never show a password.
func Open(ctx context.Context, dsn string, opts Options) (*gorm.DB, error) {
	e, err := openEngine(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(e.Dialector(), &gorm.Config{
		Logger:                 logger.Default.LogMode(logger.Silent),
		TranslateError:         true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("opening database: %w", err)
	}
	if err := db.Use(&state{engine: e, root: db}); err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("opening database: %w", err)
	}
	if err := installGuard(db, opts.Modules); err != nil {
		_ = e.Close()
		return nil, err
	}
	return db, nil
}

func openEngine(ctx context.Context, dsn string, opts Options) (engine, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if opts.Resolve != nil && path != ":memory:" {
			path = opts.Resolve(path)
		}
		e, err := sqlite.Open(ctx, path, sqlite.Options{BusyTimeout: opts.BusyTimeout, MaxOpenConns: opts.MaxOpenConns})
		if err != nil {
			return nil, err
		}
		return e, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		e, err := postgres.Open(ctx, dsn, postgres.Options{MaxOpenConns: opts.MaxOpenConns})
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, fmt.Errorf("opening database: unsupported DSN %q (want sqlite:PATH or postgres://USER:PASS@HOST:PORT/DB)", config.Redact(dsn))
}

// stateName names the gorm plugin that carries a database's store state.
const stateName = "ficus:store"

// state is what the store keeps per database. It is a gorm plugin so that it travels with
// every handle and transaction of the database (gorm shares Config.Plugins between
// sessions), with no package state.
type state struct {
	engine engine
	// root is the database as opened, bound to no module: write transactions begin on it.
	root *gorm.DB
	// committed, if set, runs after every unit of work that commits (see OnCommit).
	committed atomic.Pointer[func()]
}

func (*state) Name() string                 { return stateName }
func (*state) Initialize(db *gorm.DB) error { return nil }

func stateOf(db *gorm.DB) (*state, error) {
	if st, ok := db.Config.Plugins[stateName].(*state); ok {
		return st, nil
	}
	return nil, errors.New("the database was not opened by store.Open")
}

// EngineName returns the name of db's engine, "sqlite" or "postgres", or "" for a database
// store.Open did not open. It is for tests and tools: domain code must not depend on it.
func EngineName(db *gorm.DB) string {
	st, err := stateOf(db)
	if err != nil {
		return ""
	}
	return st.engine.Name()
}

// Close closes db's connections.
func Close(db *gorm.DB) error {
	st, err := stateOf(db)
	if err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	return st.engine.Close()
}

// moduleSetting is the gorm setting (db.Set/db.Get) that carries a handle's module.
const moduleSetting = "ficus:module"

// Handle returns module's handle on db: every statement made through it (or through a unit
// of work it joins) on another module's tables fails with ErrBoundary.
func Handle(db *gorm.DB, module string) *gorm.DB {
	// Session makes the handle safe to reuse: each statement starts from a copy of it.
	return db.Set(moduleSetting, module).Session(&gorm.Session{})
}

// unit is a unit of work, as a context carries it.
type unit struct {
	st *state
	// tx is the transaction, bound to no module.
	tx *gorm.DB
	// ended is set once the function that got the unit's context has returned: a context
	// kept beyond that (by a goroutine it started) no longer carries an open unit of work.
	ended atomic.Bool
}

type unitKey struct{}

// openUnit returns the open unit of work on st's database that ctx carries, if any.
func openUnit(ctx context.Context, st *state) (*unit, bool) {
	u, ok := ctx.Value(unitKey{}).(*unit)
	return u, ok && u.st == st && !u.ended.Load()
}

// InTx reports whether ctx carries an open unit of work: one begun by Write whose function
// has not returned yet. Nothing slow, and no network call, belongs inside one (see
// RefuseInTx).
func InTx(ctx context.Context) bool {
	u, ok := ctx.Value(unitKey{}).(*unit)
	return ok && !u.ended.Load()
}

// Conn returns the handle a read (or a write inside a unit of work) in ctx should use: the
// transaction of the unit of work ctx carries on h's database, under h's module, or else h.
// Either way it is bound to ctx.
func Conn(ctx context.Context, h *gorm.DB) *gorm.DB {
	if st, err := stateOf(h); err == nil {
		if u, ok := openUnit(ctx, st); ok {
			return bind(ctx, u.tx, h)
		}
	}
	return h.WithContext(ctx)
}

// bind returns tx under h's module (or none), bound to ctx.
func bind(ctx context.Context, tx, h *gorm.DB) *gorm.DB {
	if m, ok := h.Get(moduleSetting); ok {
		tx = tx.Set(moduleSetting, m)
	}
	return tx.WithContext(ctx)
}

// Write runs fn as a unit of work on h's database: in one write transaction, with tx bound to
// h's module and to the ctx fn receives. That ctx carries the unit of work: a Write or Conn
// made with it on the same database, by any module, joins the transaction, so their work
// commits or rolls back with fn's. That is the one way modules share a transaction, and it
// is meant to be visible: pass the ctx on only to what should join.
//
// The outermost Write returns once the work has committed (nil), or has been rolled back
// (fn's error, or the commit's). On PostgreSQL a transaction the server aborts for a
// serialization failure or a deadlock runs again, a bounded number of times, so fn must do
// nothing but database work and assigning its results. On SQLite the writers of a process
// take turns, so fn must be quick: no network calls (see RefuseInTx), no waiting on others.
func Write(ctx context.Context, h *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	st, err := stateOf(h)
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if u, ok := openUnit(ctx, st); ok {
		return fn(ctx, bind(ctx, u.tx, h))
	}
	err = st.engine.Write(ctx, st.root, func(ctx context.Context, tx *gorm.DB) error {
		u := &unit{st: st, tx: tx}
		defer u.ended.Store(true)
		ctx = context.WithValue(ctx, unitKey{}, u)
		return fn(ctx, bind(ctx, tx, h))
	})
	if err != nil {
		return err
	}
	if f := st.committed.Load(); f != nil {
		(*f)()
	}
	return nil
}

// OnCommit makes fn run after every unit of work on db commits, so that a reader of what the
// writers add (an outbox relay) can look at once instead of polling. fn runs on the
// committing goroutine and must not block; it replaces any earlier fn, and nil removes it.
func OnCommit(db *gorm.DB, fn func()) {
	st, err := stateOf(db)
	if err != nil {
		return
	}
	if fn == nil {
		st.committed.Store(nil)
		return
	}
	st.committed.Store(&fn)
}

// lockKeys makes the unit of work tx belongs to wait until no other holds any of keys, and
// holds them until it ends: units of work that lock a common key commit one after the other,
// in the order they locked it. On SQLite, where write transactions take turns anyway, it
// does nothing. Migrations lock one key so, so that processes starting at once on one
// PostgreSQL database apply each migration once.
func lockKeys(tx *gorm.DB, keys ...string) error {
	st, err := stateOf(tx)
	if err != nil {
		return fmt.Errorf("locking keys: %w", err)
	}
	if l, ok := st.engine.(keyLocker); ok {
		return l.LockKeys(tx, keys)
	}
	return nil
}
