package store_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
)

// TestGroupedTurnsCommitAlone: concurrent writers share commits, but each one's work commits
// or rolls back on its own, and InTx returns only once its work is visible to everyone.
func TestGroupedTurnsCommitAlone(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	alpha := store.Handle(db, "alpha")
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(i)
			errs[i] = store.InTx(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
				if err := tx.Create(&alphaThing{ID: id, N: i}).Error; err != nil {
					return err
				}
				if i%3 == 0 {
					return boom
				}
				if i%7 == 0 {
					return tx.Create(&betaThing{ID: id}).Error // refused by the guard
				}
				return nil
			})
			if errs[i] == nil {
				// Committed: another connection sees it at once.
				var n int64
				if err := db.Table("alpha_things").Where("id = ?", id).Count(&n).Error; err != nil || n != 1 {
					t.Errorf("turn %d returned before its work was visible: %d rows, %v", i, n, err)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		want := i%3 != 0 && i%7 != 0
		var n int64
		db.Table("alpha_things").Where("id = ?", fmt.Sprint(i)).Count(&n)
		if want && (err != nil || n != 1) || !want && (err == nil || n != 0) {
			t.Errorf("turn %d: err %v, %d rows", i, err, n)
		}
	}
}

func TestPanickingTurnLeavesOthersAlone(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	alpha := store.Handle(db, "alpha")
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
			err := store.InTx(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
				if err := tx.Create(&alphaThing{ID: fmt.Sprint(i)}).Error; err != nil {
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
	var n int64
	db.Table("alpha_things").Count(&n)
	if n != 40 {
		t.Errorf("%d rows, want the 40 of the turns that did not panic", n)
	}
}

// TestCancelledWaiterDoesNotStrandGroup: a writer that gives up while queued must not leave
// the group it was waited for uncommitted.
func TestCancelledWaiterDoesNotStrandGroup(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	alpha := store.Handle(db, "alpha")
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error)
	go func() {
		first <- store.InTx(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
			close(entered)
			<-release
			return tx.Create(&alphaThing{ID: "1"}).Error
		})
	}()
	<-entered
	cctx, cancel := context.WithCancel(ctx)
	second := make(chan error)
	go func() {
		second <- store.InTx(cctx, alpha, func(ctx context.Context, tx *gorm.DB) error { return nil })
	}()
	// Let the second writer queue, then give up; then let the first one finish.
	for store.WritersWaiting(alpha) == 0 {
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
	var n int64
	db.Table("alpha_things").Count(&n)
	if n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}
