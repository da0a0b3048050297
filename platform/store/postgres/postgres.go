// Package postgres is the PostgreSQL engine behind platform/store. It connects through pgx
// (database/sql on pgx's stdlib, so gorm's PostgreSQL dialect runs on it), keeps statements
// prepared per connection (pgx's statement cache), retries a write transaction that the server
// aborted for a serialization failure or a deadlock, and explains a failed connection in
// terms of the URL the user wrote (host, port, database; never the password).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// MaxOpenConns bounds the connection pool. Default 16: every write transaction holds a
	// connection for its length, and PostgreSQL runs them side by side.
	MaxOpenConns int
	// Attempts is how many times a write transaction runs before a serialization failure
	// (SQLSTATE 40001) or a deadlock (40P01) is returned to the caller. Default 5.
	Attempts int
	// ConnectTimeout bounds one connection attempt when the URL sets no connect_timeout.
	// Default 5s.
	ConnectTimeout time.Duration
}

// Engine is an open PostgreSQL database: its connection pool and how it runs writes.
type Engine struct {
	db       *sql.DB
	where    string // "database shop on 127.0.0.1:5432", for messages
	attempts int
}

// Open connects to the database that url (postgres://USER:PASS@HOST:PORT/DB?sslmode=…)
// names and checks that it answers. Its errors name the host, port and database, never the
// password.
func Open(ctx context.Context, url string, opts Options) (*Engine, error) {
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 16
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if _, err := neturl.Parse(url); err != nil {
		// url.Error quotes the URL, password and all: keep only the reason.
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("opening PostgreSQL database: invalid URL: %w", err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL (which parses, see above) with its password masked.
		return nil, fmt.Errorf("opening PostgreSQL database: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = opts.ConnectTimeout
	}
	e := &Engine{
		where:    fmt.Sprintf("database %q on %s as user %q", cfg.Database, hostPort(cfg.Host, cfg.Port), cfg.User),
		attempts: opts.Attempts,
	}
	e.db = stdlib.OpenDB(*cfg)
	e.db.SetMaxOpenConns(opts.MaxOpenConns)
	e.db.SetMaxIdleConns(opts.MaxOpenConns)
	// Connections are renewed now and then, so that a server-side change (a failover, a
	// restarted pooler) does not pin a stale connection for ever.
	e.db.SetConnMaxLifetime(30 * time.Minute)
	if err := e.db.PingContext(ctx); err != nil {
		_ = e.db.Close()
		return nil, e.explain(cfg, err)
	}
	return e, nil
}

// explain turns a failed first connection into a message that says what to do.
func (e *Engine) explain(cfg *pgx.ConnConfig, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("opening PostgreSQL %s: the database does not exist; create it (createdb -h %s -p %d -U %s %s) or fix the URL: %w",
				e.where, cfg.Host, cfg.Port, cfg.User, cfg.Database, err)
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("opening PostgreSQL %s: the server refused the user or its password: %w", e.where, err)
		}
		return fmt.Errorf("opening PostgreSQL %s: %w", e.where, err)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("opening PostgreSQL %s: cannot reach the server; is it running and listening there? %w", e.where, err)
	}
	return fmt.Errorf("opening PostgreSQL %s: %w", e.where, err)
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("socket %s (port %d)", host, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// Name is "postgres".
func (*Engine) Name() string { return "postgres" }

// Dialector is gorm's PostgreSQL dialect over the engine's pool.
func (e *Engine) Dialector() gorm.Dialector {
	return gormpostgres.New(gormpostgres.Config{Conn: e.db})
}

// Write runs fn in a transaction begun from db (READ COMMITTED, the server's default) and
// commits it. When the server aborts the transaction for a serialization failure or a
// deadlock, Write rolls it back and runs fn again, a bounded number of times with a short
// random pause in between; fn must therefore have no effect outside the transaction but
// assigning its results. Any other error, or the last retryable one, is returned.
func (e *Engine) Write(ctx context.Context, db *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	for attempt := 1; ; attempt++ {
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return fn(ctx, tx) })
		if err == nil || !retryable(err) {
			return err
		}
		if attempt >= e.attempts {
			return fmt.Errorf("write transaction failed %d times: %w", attempt, err)
		}
		// Full jitter over a window that doubles: the transactions that collided should not
		// collide again.
		pause := time.Duration(rand.Int64N(int64(time.Millisecond) << attempt))
		select {
		case <-ctx.Done():
			return fmt.Errorf("write transaction: %w (retrying after: %w)", ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

// retryable reports whether err aborted a transaction that may succeed if run again: a
// serialization failure (SQLSTATE 40001) or a deadlock (40P01).
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "40001" || pgErr.Code == "40P01"
}

// LockKeys makes tx wait until no other transaction holds any of keys, and holds them until
// tx ends: transactions that lock a common key commit one after the other, in the order they
// locked it. Keys are locked in sorted order, so two transactions never wait on each other
// over them. The locks are PostgreSQL advisory locks on a 64-bit hash of each key.
func (e *Engine) LockKeys(tx *gorm.DB, keys []string) error {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	if len(keys) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	args := make([]any, len(keys))
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		// The select list runs left to right: the keys are locked in the order given.
		q.WriteString("pg_advisory_xact_lock(hashtextextended(?, 0))")
		args[i] = k
	}
	rows, err := tx.Raw(q.String(), args...).Rows()
	if err != nil {
		return fmt.Errorf("locking %d keys: %w", len(keys), err)
	}
	return rows.Close()
}

// Close closes the connection pool.
func (e *Engine) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("closing PostgreSQL %s: %w", e.where, err)
	}
	return nil
}
