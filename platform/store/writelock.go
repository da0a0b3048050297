package store

import (
	"context"
	"fmt"
	"sync/atomic"

	"gorm.io/gorm"
)

const writeLockName = "ficus:write_lock"

// maxGroup bounds how many turns share one commit.
const maxGroup = 64

// Savepoint statements of a turn; fixed, so they stay prepared (see cacheable).
const (
	turnBegin    = "SAVEPOINT ficus_turn"
	turnRollback = "ROLLBACK TO ficus_turn"
	turnEnd      = "RELEASE ficus_turn"
)

// writeLock queues a SQLite database's write transactions in the process, in arrival order,
// rather than in SQLite's busy handler, which sleeps and retries and lets an unlucky writer
// starve for seconds under load. It is a gorm plugin so it travels with the *gorm.DB, with no
// package state.
//
// Turns that queue up behind each other share one transaction (group commit): each turn runs
// in a savepoint of the open transaction, which is rolled back if the turn fails, and the
// transaction commits when no writer is waiting any more (or after maxGroup turns). A commit
// costs a write of every page the transaction changed, and consecutive turns mostly change
// the same pages (the last leaf of each table), so under load the commit is shared instead
// of paid per turn. A turn's InTx returns only once its group has committed: its caller never
// sees success for work that did not commit.
type writeLock struct {
	// sem is the turn: held by the one goroutine that may use the open transaction.
	sem chan struct{}
	// waiting counts writers queued for the turn (not the members of a group waiting for
	// its commit).
	waiting atomic.Int32
	// open is the group whose transaction is open; only the turn's holder touches it.
	open *group
	// committed, if set, is called after a group that kept some work commits (see OnCommit).
	committed atomic.Pointer[func()]
}

// group is one transaction shared by consecutive turns.
type group struct {
	tx    *gorm.DB
	turns int
	// kept says a turn's work stayed in the transaction (not every turn failed).
	kept bool
	done chan struct{} // closed once the transaction has ended
	err  error         // why it did not commit; set before done is closed
}

func newWriteLock() *writeLock { return &writeLock{sem: make(chan struct{}, 1)} }

func (*writeLock) Name() string                 { return writeLockName }
func (*writeLock) Initialize(db *gorm.DB) error { return nil }

// run takes a turn, runs fn in it and waits for the turn's group to commit.
func (wl *writeLock) run(ctx context.Context, h *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	wl.waiting.Add(1)
	select {
	case wl.sem <- struct{}{}:
		wl.waiting.Add(-1)
	case <-ctx.Done():
		wl.waiting.Add(-1)
		// The holder may have left its group open for this writer: see that it ends.
		go wl.flush()
		return fmt.Errorf("waiting for the write lock: %w", ctx.Err())
	}
	g := wl.open
	if g == nil {
		// The transaction outlives this turn, so it must not end with this turn's context.
		tx := h.Session(&gorm.Session{Context: context.WithoutCancel(ctx)}).Begin()
		if tx.Error != nil {
			<-wl.sem
			return tx.Error
		}
		// The group belongs to no module: each turn works under its own handle's.
		tx.Statement.Settings.Delete(moduleSetting)
		g = &group{tx: tx, done: make(chan struct{})}
		wl.open = g
	}
	g.turns++

	finished := false
	defer func() {
		if !finished {
			// fn panicked: undo its work, let the group go on, and let the panic go on.
			wl.endTurn(ctx, g, true)
			<-wl.sem
		}
	}()
	err := wl.turn(ctx, g, h, fn)
	finished = true
	wl.endTurn(ctx, g, err != nil)
	<-wl.sem
	if err != nil {
		return err // its work is rolled back: nothing of it to wait for
	}
	return wl.await(g)
}

// turn runs fn in a savepoint of g's transaction. Once a turn has started it runs to its end
// whatever happens to ctx: cancelling a statement of a transaction can make SQLite roll the
// whole transaction back, and with it the work of the group's other turns.
func (wl *writeLock) turn(ctx context.Context, g *group, h *gorm.DB, fn func(ctx context.Context, tx *gorm.DB) error) error {
	if err := g.exec(ctx, turnBegin); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	// The transaction under h's module (or none), as if the turn had begun it from h.
	tx := Conn(context.WithValue(ctx, txKey{}, g.tx), h)
	ctx = context.WithValue(ctx, txKey{}, tx)
	return fn(ctx, tx)
}

// endTurn releases the turn's savepoint, rolling it back first if it failed, and commits the
// group unless a writer is waiting to join it. It runs holding the turn.
func (wl *writeLock) endTurn(ctx context.Context, g *group, failed bool) {
	var err error
	if failed {
		err = g.exec(ctx, turnRollback)
	}
	if err == nil {
		err = g.exec(ctx, turnEnd)
	}
	if err == nil && !failed {
		g.kept = true
	}
	switch {
	case err != nil:
		// The transaction is in a state nobody can vouch for: abandon the whole group.
		wl.end(g, fmt.Errorf("ending a write turn: %w", err))
	case wl.waiting.Load() == 0 || g.turns >= maxGroup:
		wl.end(g, nil)
	}
}

// end commits g's transaction (or, with cause, rolls it back) and tells its members. It runs
// holding the turn.
func (wl *writeLock) end(g *group, cause error) {
	if cause == nil {
		cause = g.tx.Commit().Error
	}
	if cause != nil {
		g.tx.Rollback()
	}
	g.err = cause
	wl.open = nil
	close(g.done)
	if fn := wl.committed.Load(); fn != nil && cause == nil && g.kept {
		(*fn)()
	}
}

// await waits for g to end. A member that gets the turn back before that, with the group still
// open, commits it: the writers it left the group open for have had their turns.
func (wl *writeLock) await(g *group) error {
	select {
	case <-g.done:
	case wl.sem <- struct{}{}:
		if wl.open == g {
			wl.end(g, nil)
		}
		<-wl.sem
		<-g.done
	}
	if g.err != nil {
		return fmt.Errorf("committing: %w", g.err)
	}
	return nil
}

// flush commits the open group, if any.
func (wl *writeLock) flush() {
	wl.sem <- struct{}{}
	if wl.open != nil {
		wl.end(wl.open, nil)
	}
	<-wl.sem
}

// exec runs a statement of the turn protocol on g's transaction, past gorm.
func (g *group) exec(ctx context.Context, stmt string) error {
	_, err := g.tx.Statement.ConnPool.ExecContext(context.WithoutCancel(ctx), stmt)
	return err
}
