package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func open(t *testing.T) (*Engine, *gorm.DB) {
	t.Helper()
	ctx := context.Background()
	e, err := Open(ctx, filepath.Join(t.TempDir(), "sub", "t.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	db, err := gorm.Open(e.Dialector(), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`CREATE TABLE things (id TEXT PRIMARY KEY, n INTEGER)`).Error; err != nil {
		t.Fatal(err)
	}
	return e, db
}

func count(t *testing.T, db *gorm.DB, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Table("things").Where(where, args...).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func insert(tx *gorm.DB, id string) error {
	return tx.Exec(`INSERT INTO things (id, n) VALUES (?, 1)`, id).Error
}

// TestGroupedTurnsCommitAlone: concurrent writers share commits, but each one's work commits
// or rolls back on its own (a turn that fails, by its own choice or by a failed statement,
// takes none of the others with it), and Write returns only once its work is visible to
// everyone.
func TestGroupedTurnsCommitAlone(t *testing.T) {
	e, db := open(t)
	ctx := context.Background()
	if err := insert(db, "taken"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(i)
			errs[i] = e.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
				if err := insert(tx.WithContext(ctx), id); err != nil {
					return err
				}
				if i%3 == 0 {
					return boom
				}
				if i%7 == 0 {
					return insert(tx, "taken") // a statement that fails
				}
				return nil
			})
			if errs[i] == nil {
				// Committed: another connection sees it at once.
				if n := count(t, db, "id = ?", id); n != 1 {
					t.Errorf("turn %d returned before its work was visible: %d rows", i, n)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		want := i%3 != 0 && i%7 != 0
		n := count(t, db, "id = ?", fmt.Sprint(i))
		if want && (err != nil || n != 1) || !want && (err == nil || n != 0) {
			t.Errorf("turn %d: err %v, %d rows", i, err, n)
		}
	}
}

func TestPanickingTurnLeavesOthersAlone(t *testing.T) {
	e, db := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil && i%5 != 0 {
					t.Errorf("turn %d panicked: %v", i, r)
				}
			}()
			err := e.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
				if err := insert(tx, fmt.Sprint(i)); err != nil {
					return err
				}
				if i%5 == 0 {
					panic("boom")
				}
				return nil
			})
			if err != nil {
				t.Errorf("turn %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if n := count(t, db, "1 = 1"); n != 40 {
		t.Errorf("%d rows, want the 40 of the turns that did not panic", n)
	}
}

// TestCancelledWaiterDoesNotStrandGroup: a writer that gives up while queued must not leave
// the group it was waited for uncommitted.
func TestCancelledWaiterDoesNotStrandGroup(t *testing.T) {
	e, db := open(t)
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- e.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			close(entered)
			<-release
			return insert(tx, "1")
		})
	}()
	<-entered
	cctx, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() {
		second <- e.Write(cctx, db, func(ctx context.Context, tx *gorm.DB) error { return nil })
	}()
	// Let the second writer queue, then give up; then let the first one finish.
	deadline := time.Now().Add(5 * time.Second)
	for e.writersWaiting() == 0 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the second writer never queued")
		}
		runtime.Gosched()
	}
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled writer: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first writer: %v", err)
	}
	if n := count(t, db, "1 = 1"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

// TestTurnStatementsStayPrepared: the statements of a turn, and the turn protocol's own,
// are prepared once on the database and reused by every later transaction.
func TestTurnStatementsStayPrepared(t *testing.T) {
	e, db := open(t)
	ctx := context.Background()
	for i := range 20 {
		err := e.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error { return insert(tx, fmt.Sprint(i)) })
		if err != nil {
			t.Fatal(err)
		}
	}
	e.pool.mu.RLock()
	defer e.pool.mu.RUnlock()
	for _, q := range []string{turnBegin, turnEnd, `INSERT INTO things (id, n) VALUES (?, 1)`} {
		if _, ok := e.pool.stmts[q]; !ok {
			t.Errorf("%q is not kept prepared", q)
		}
	}
}
