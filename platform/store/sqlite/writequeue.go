package sqlite

import (
	"context"
	"fmt"
	"sync/atomic"

	"gorm.io/gorm"
)

// maxGroup bounds how many turns share one commit.
const maxGroup = 64

// Savepoint statements of a turn; fixed, so they stay prepared (see cacheable).
const (
	turnBegin    = "SAVEPOINT ficus_turn"
	turnRollback = "ROLLBACK TO ficus_turn"
	turnEnd      = "RELEASE ficus_turn"
)

// writeQueue queues a SQLite database's write transactions in the process, in arrival order,
// rather than in SQLite's busy handler, which sleeps and retries and lets an unlucky writer
// starve for seconds under load.
//
// Turns that queue up behind each other share one transaction (group commit): each turn runs
// in a savepoint of the open transaction, which is rolled back if the turn fails, and the
// transaction commits when no writer is waiting any more (or after maxGroup turns). A commit
// costs a write of every page the transaction changed, and consecutive turns mostly change
// the same pages (the last leaf of each table), so under load the commit is shared instead
// of paid per turn. A turn's run returns only once its group has committed: its caller never
// sees success for work that did not commit.
//
// While a turn runs, every other writer of the process waits: a turn must not wait on
// anything slow, least of all the network (store.RefuseInTx enforces that for HTTP).
type writeQueue struct {
	// sem is the turn: held by the one goroutine that may use the open transaction.
	sem chan struct{}
	// waiting counts writers queued for the turn (not the members of a group waiting for
	// its commit).
	waiting atomic.Int32
	// open is the group whose transaction is open; only the turn's holder touches it.
	open *group
}

// group is one transaction shared by consecutive turns.
type group struct {
	tx *gorm.DB
	// conn is tx's transaction under gorm, for the turn protocol's own statements.
	conn  *stmtTx
	turns int
	done  chan struct{} // closed once the transaction has ended
	err   error         // why it did not commit; set before done is closed
}

func newWriteQueue() *writeQueue { return &writeQueue{sem: make(chan struct{}, 1)} }

// run takes a turn, runs fn in it and waits for the turn's group to commit. A group's
// transaction is begun from db.
func (q *writeQueue) run(ctx context.Context, db *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	q.waiting.Add(1)
	select {
	case q.sem <- struct{}{}:
		q.waiting.Add(-1)
	case <-ctx.Done():
		q.waiting.Add(-1)
		// The holder may have left its group open for this writer: see that it ends.
		go q.flush()
		return fmt.Errorf("waiting for the write turn: %w", ctx.Err())
	}
	g := q.open
	if g == nil {
		var err error
		if g, err = begin(ctx, db); err != nil {
			<-q.sem
			return err
		}
		q.open = g
	}
	g.turns++

	finished := false
	defer func() {
		if !finished {
			// fn panicked: undo its work, let the group go on, and let the panic go on.
			q.endTurn(ctx, g, true)
			<-q.sem
		}
	}()
	err := q.turn(ctx, g, fn)
	finished = true
	q.endTurn(ctx, g, err != nil)
	<-q.sem
	if err != nil {
		return err // its work is rolled back: nothing of it to wait for
	}
	return q.await(g)
}

// begin begins a group's transaction on db.
func begin(ctx context.Context, db *gorm.DB) (*group, error) {
	var conn *stmtTx
	// The transaction outlives this turn, so it must not end with this turn's context. gorm
	// passes Begin's context on to the pool's BeginTx, which leaves the transaction it begins
	// in the slot (gorm has no public way to reach it); if it ever stopped doing so, begin
	// would fail, and with it every write test.
	bctx := context.WithValue(context.WithoutCancel(ctx), txSlot{}, &conn)
	tx := db.WithContext(bctx).Begin()
	if tx.Error != nil {
		return nil, fmt.Errorf("beginning a write transaction: %w", tx.Error)
	}
	if conn == nil {
		tx.Rollback()
		return nil, fmt.Errorf("beginning a write transaction: the database is not this engine's")
	}
	return &group{tx: tx, conn: conn, done: make(chan struct{})}, nil
}

// turn runs fn in a savepoint of g's transaction. Once a turn has started it runs to its end
// whatever happens to ctx: cancelling a statement of a transaction can make SQLite roll the
// whole transaction back, and with it the work of the group's other turns.
func (q *writeQueue) turn(ctx context.Context, g *group, fn func(ctx context.Context, tx *gorm.DB) error) error {
	if err := g.exec(ctx, turnBegin); err != nil {
		return err
	}
	return fn(context.WithoutCancel(ctx), g.tx)
}

// endTurn releases the turn's savepoint, rolling it back first if it failed, and commits the
// group unless a writer is waiting to join it. It runs holding the turn.
func (q *writeQueue) endTurn(ctx context.Context, g *group, failed bool) {
	var err error
	if failed {
		err = g.exec(ctx, turnRollback)
	}
	if err == nil {
		err = g.exec(ctx, turnEnd)
	}
	switch {
	case err != nil:
		// The transaction is in a state nobody can vouch for: abandon the whole group.
		q.end(g, fmt.Errorf("ending a write turn: %w", err))
	case q.waiting.Load() == 0 || g.turns >= maxGroup:
		q.end(g, nil)
	}
}

// end commits g's transaction (or, with cause, rolls it back) and tells its members. It runs
// holding the turn.
func (q *writeQueue) end(g *group, cause error) {
	if cause == nil {
		cause = g.tx.Commit().Error
	}
	if cause != nil {
		g.tx.Rollback()
	}
	g.err = cause
	q.open = nil
	close(g.done)
}

// await waits for g to end. A member that gets the turn back before that, with the group still
// open, commits it: the writers it left the group open for have had their turns.
func (q *writeQueue) await(g *group) error {
	select {
	case <-g.done:
	case q.sem <- struct{}{}:
		if q.open == g {
			q.end(g, nil)
		}
		<-q.sem
		<-g.done
	}
	if g.err != nil {
		return fmt.Errorf("committing: %w", g.err)
	}
	return nil
}

// flush commits the open group, if any.
func (q *writeQueue) flush() {
	q.sem <- struct{}{}
	if q.open != nil {
		q.end(q.open, nil)
	}
	<-q.sem
}

// exec runs a statement of the turn protocol on g's transaction, past gorm: it is the
// queue's own bookkeeping, not a statement of any module.
func (g *group) exec(ctx context.Context, stmt string) error {
	_, err := g.conn.ExecContext(context.WithoutCancel(ctx), stmt)
	return err
}
