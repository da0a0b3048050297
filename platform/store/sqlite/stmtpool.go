package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

// stmtPool is the gorm connection pool of a SQLite database. It prepares each data statement
// (SELECT, INSERT, UPDATE, DELETE) once per connection and keeps it, inside transactions as
// well as outside.
//
// gorm's own PrepareStmt cannot do that here: a statement first met inside a transaction is
// prepared on the transaction, so database/sql ties it to that transaction and prepares it
// again in every later one. Almost every statement of this code base runs in a transaction, so
// gorm's cache re-prepared nearly everything. stmtPool prepares on the database instead; a
// transaction then borrows the statement already prepared on its connection (Tx.StmtContext),
// and prepares it only on a connection that has not seen it yet.
type stmtPool struct {
	db *sql.DB

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

var (
	_ gorm.ConnPool         = (*stmtPool)(nil)
	_ gorm.ConnPoolBeginner = (*stmtPool)(nil)
	_ gorm.GetDBConnector   = (*stmtPool)(nil)
	_ gorm.Tx               = (*stmtTx)(nil)
	_ gorm.GetDBConnector   = (*stmtTx)(nil)
)

const (
	// maxStmts bounds the cache. The statements of a code base are few; multi-row inserts
	// add one per row count. Past the bound, new statements run unprepared.
	maxStmts = 1024
	// prepareWait bounds the wait for a connection to prepare a statement on. A statement
	// met inside a transaction is prepared on another connection of the pool; if none is
	// free, or none frees up soon, the statement runs unprepared on the transaction instead.
	prepareWait = 50 * time.Millisecond
)

func newStmtPool(db *sql.DB) *stmtPool {
	return &stmtPool{db: db, stmts: map[string]*sql.Stmt{}}
}

// stmt returns query's statement prepared on the database, or nil for a statement that runs
// unprepared: not a data statement, the cache is full, or preparing it failed (running it
// then reports the error). inTx says the caller holds a connection in a transaction:
// preparing then takes a second connection, which it does not wait long for.
func (p *stmtPool) stmt(ctx context.Context, query string, inTx bool) *sql.Stmt {
	p.mu.RLock()
	s, ok := p.stmts[query]
	p.mu.RUnlock()
	if ok || !cacheable(query) {
		return s
	}
	if inTx {
		st := p.db.Stats()
		if st.Idle == 0 && st.MaxOpenConnections > 0 && st.OpenConnections >= st.MaxOpenConnections {
			return nil // every connection is busy, perhaps the only one is this transaction's
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), prepareWait)
		defer cancel()
	}
	s, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if have, ok := p.stmts[query]; ok {
		_ = s.Close()
		return have
	}
	if len(p.stmts) >= maxStmts {
		_ = s.Close()
		return nil
	}
	p.stmts[query] = s
	return s
}

// cacheable reports whether query is a data statement worth keeping prepared. Transaction
// control (SAVEPOINT, with names gorm makes up per call), schema changes and pragmas run
// unprepared.
func cacheable(query string) bool {
	switch query {
	case turnBegin, turnRollback, turnEnd:
		return true
	}
	q := strings.TrimLeft(query, " \t\r\n(")
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE":
		return true
	}
	return strings.EqualFold(q[:5], "WITH ")
}

func (p *stmtPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

func (p *stmtPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return p.db.PrepareContext(ctx, query)
}

func (p *stmtPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := p.stmt(ctx, query, false); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return p.db.ExecContext(ctx, query, args...)
}

func (p *stmtPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := p.stmt(ctx, query, false); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

func (p *stmtPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := p.stmt(ctx, query, false); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

func (p *stmtPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	t := &stmtTx{Tx: tx, pool: p}
	if slot, ok := ctx.Value(txSlot{}).(**stmtTx); ok {
		*slot = t
	}
	return t, nil
}

// txSlot keys a **stmtTx in the context of a Begin: BeginTx puts the transaction it begins
// there. The write queue learns so the transaction under the gorm one it began, and runs
// its own statements (savepoints) on it directly, through gorm's public API only.
type txSlot struct{}

// close closes the cached statements.
func (p *stmtPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for q, s := range p.stmts {
		_ = s.Close()
		delete(p.stmts, q)
	}
}

// stmtTx is a transaction of a stmtPool. It keeps the statements it has borrowed, since a
// transaction often runs one statement several times.
type stmtTx struct {
	*sql.Tx
	pool  *stmtPool
	stmts map[*sql.Stmt]*sql.Stmt
}

func (t *stmtTx) GetDBConn() (*sql.DB, error) { return t.pool.db, nil }

// stmt returns query's statement bound to the transaction, or nil to run it unprepared.
func (t *stmtTx) stmt(ctx context.Context, query string) *sql.Stmt {
	s := t.pool.stmt(ctx, query, true)
	if s == nil {
		return nil
	}
	if ts, ok := t.stmts[s]; ok {
		return ts
	}
	if t.stmts == nil {
		t.stmts = make(map[*sql.Stmt]*sql.Stmt, 16)
	}
	ts := t.Tx.StmtContext(ctx, s)
	t.stmts[s] = ts
	return ts
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := t.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *stmtTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}
