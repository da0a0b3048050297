package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestConcurrentWritersAllCommit: many writers at once, each incrementing one counter and
// adding its own row; every one commits, and no increment is lost.
func TestConcurrentWritersAllCommit(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	if err := db.Create(&betaThing{ID: "counter"}).Error; err != nil {
		t.Fatal(err)
	}
	const writers = 64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
				if err := tx.Exec(`UPDATE beta_things SET n = n + 1 WHERE id = 'counter'`).Error; err != nil {
					return err
				}
				return tx.Create(&alphaThing{ID: fmt.Sprint(i)}).Error
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var n int64
	if err := db.Raw(`SELECT n FROM beta_things WHERE id = 'counter'`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n != writers || count(t, db, "alpha_things") != writers {
		t.Errorf("counter %d, %d rows; want %d of each", n, count(t, db, "alpha_things"), writers)
	}
}

// testRetriesSerializationFailures (PostgreSQL): a transaction the server aborts with SQLSTATE
// 40001 runs again, and only the attempt that commits leaves its work; one that keeps failing
// gives up after a bounded number of attempts.
func testRetriesSerializationFailures(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	fail := `DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '40001'; END $$`
	var attempts atomic.Int64
	err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		n := attempts.Add(1)
		if err := tx.Create(&alphaThing{ID: fmt.Sprint("attempt-", n)}).Error; err != nil {
			return err
		}
		if n < 3 {
			return tx.Exec(fail).Error
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Write = %v after %d attempts", err, attempts.Load())
	}
	var ids []string
	db.Raw(`SELECT id FROM alpha_things`).Scan(&ids)
	if attempts.Load() != 3 || len(ids) != 1 || ids[0] != "attempt-3" {
		t.Errorf("%d attempts left rows %v; want 3 attempts and only attempt-3's row", attempts.Load(), ids)
	}

	attempts.Store(0)
	err = store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		attempts.Add(1)
		return tx.Exec(fail).Error
	})
	if err == nil || !strings.Contains(err.Error(), "40001") {
		t.Fatalf("a transaction that always fails: err = %v", err)
	}
	if n := attempts.Load(); n < 2 || n > 10 {
		t.Errorf("a transaction that always fails ran %d times; want a few, and a bound", n)
	}
	attempts.Store(0)
	err = store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		attempts.Add(1)
		return tx.Exec(`SELECT * FROM no_such_table`).Error
	})
	if err == nil || attempts.Load() != 1 {
		t.Errorf("an error that is no conflict: err = %v after %d attempts, want it at once", err, attempts.Load())
	}
}

// testRetriesDeadlocks (PostgreSQL): two transactions that lock two rows in opposite orders
// deadlock; the server aborts one (SQLSTATE 40P01), which runs again, and both commit.
func testRetriesDeadlocks(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := db.Create(&betaThing{ID: id}).Error; err != nil {
			t.Fatal(err)
		}
	}
	// Both take their first lock before either takes its second: on the first attempt only.
	var firstLocks sync.WaitGroup
	firstLocks.Add(2)
	var attempts atomic.Int64
	write := func(first, second string) error {
		var once sync.Once
		return store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			attempts.Add(1)
			if err := tx.Exec(`UPDATE beta_things SET n = n + 1 WHERE id = ?`, first).Error; err != nil {
				return err
			}
			once.Do(func() {
				firstLocks.Done()
				firstLocks.Wait()
			})
			return tx.Exec(`UPDATE beta_things SET n = n + 1 WHERE id = ?`, second).Error
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- write("a", "b") }()
	go func() { errs <- write("b", "a") }()
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Write = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the deadlocked writers never finished")
		}
	}
	if n := attempts.Load(); n < 3 {
		t.Errorf("%d attempts: the deadlock was not retried", n)
	}
	var ns []int64
	db.Raw(`SELECT n FROM beta_things ORDER BY id`).Scan(&ns)
	if len(ns) != 2 || ns[0] != 2 || ns[1] != 2 {
		t.Errorf("counters %v, want [2 2]: each writer's work exactly once", ns)
	}
}

// testLockKeysOrdersCommits (PostgreSQL): a unit of work that locks a key another holds waits
// until that one has committed.
func testLockKeysOrdersCommits(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	locked, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			if err := store.LockKeysForTest(tx, "subject-1", "subject-2"); err != nil {
				return err
			}
			close(locked)
			<-release
			return tx.Create(&alphaThing{ID: "first"}).Error
		})
	}()
	<-locked
	second := make(chan error, 1)
	var sawFirst atomic.Bool
	go func() {
		second <- store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			if err := store.LockKeysForTest(tx, "subject-2"); err != nil {
				return err
			}
			var n int64
			tx.Table("alpha_things").Where("id = 'first'").Count(&n)
			sawFirst.Store(n == 1)
			return nil
		})
	}()
	// An unrelated key is not held up.
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		return store.LockKeysForTest(tx, "subject-3")
	}); err != nil {
		t.Fatal(err)
	}
	// Wait until the server shows the second one waiting for the key.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int64
		if err := db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting).Error; err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-second:
			close(release)
			t.Fatalf("the second unit of work got the key while the first held it (err %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the second unit of work never waited for the key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second unit of work never got the key")
	}
	if !sawFirst.Load() {
		t.Error("the second unit of work ran before the first had committed")
	}
}

// TestOpenExplainsAnUnreachableServer: a PostgreSQL URL whose server is not there fails at
// once with a message naming where it looked, and not the password.
func TestOpenExplainsAnUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Nothing listens there now: connections are refused.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = store.Open(ctx, "postgres://shop:hunter2@"+addr+"/shopdb?sslmode=disable", store.Options{})
	if err == nil {
		t.Fatal("opened a database on a server that is not there")
	}
	for _, want := range []string{addr, `"shopdb"`, "cannot reach"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
	_, err = store.Open(ctx, "postgres://shop:hunter2@host:99999999/db%zz", store.Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an invalid URL: err = %v; want an error without the password", err)
	}
}

// testOpenExplainsAMissingDatabase (PostgreSQL): a URL naming a database the server does not
// have fails with a message saying so, with host, port and database, and not the password.
func testOpenExplainsAMissingDatabase(t *testing.T) {
	u, err := url.Parse(storetest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/ficus_no_such_database"
	u.User = url.UserPassword(u.User.Username(), "hunter2")
	_, err = store.Open(context.Background(), u.String(), store.Options{})
	if err == nil {
		t.Fatal("opened a database that does not exist")
	}
	for _, want := range []string{u.Host, `"ficus_no_such_database"`, "does not exist", "createdb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("the error wraps nothing: %v", err)
	}
}
