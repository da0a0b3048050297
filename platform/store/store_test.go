package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
)

func open(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "sub", "t.db"), store.Options{Modules: []string{"alpha", "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	return db
}

var schema = fstest.MapFS{
	"0001_init.sql": {Data: []byte("-- two tables\nCREATE TABLE alpha_things (id TEXT PRIMARY KEY, n INTEGER);\nCREATE TABLE beta_things (id TEXT PRIMARY KEY, n INTEGER);\n")},
	"0002_more.sql": {Data: []byte("ALTER TABLE alpha_things ADD COLUMN note TEXT;\n")},
}

type alphaThing struct {
	ID   string `gorm:"primaryKey"`
	N    int
	Note string
}

func (alphaThing) TableName() string { return "alpha_things" }

type betaThing struct {
	ID string `gorm:"primaryKey"`
	N  int
}

func (betaThing) TableName() string { return "beta_things" }

func TestMigrateAppliesOnceInOrder(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	var n int64
	db.Table("ficus_schema_migrations").Where("component = ?", "test").Count(&n)
	if n != 2 {
		t.Errorf("recorded %d migrations, want 2", n)
	}
	if err := db.Create(&alphaThing{ID: "a", Note: "column from 0002"}).Error; err != nil {
		t.Errorf("second migration not applied: %v", err)
	}
	bad := fstest.MapFS{"0003_broken.sql": {Data: []byte("CREATE TABLE;\n")}}
	if err := store.Migrate(ctx, db, "test", bad, "."); err == nil {
		t.Errorf("a broken migration was accepted")
	}
	db.Table("ficus_schema_migrations").Where("component = ?", "test").Count(&n)
	if n != 2 {
		t.Errorf("a failed migration was recorded")
	}
}

func TestGuardKeepsModulesApart(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	alpha := store.Handle(db, "alpha")
	if err := alpha.Create(&alphaThing{ID: "1"}).Error; err != nil {
		t.Fatalf("own table refused: %v", err)
	}
	tests := map[string]func() error{
		"create":  func() error { return alpha.Create(&betaThing{ID: "1"}).Error },
		"query":   func() error { var b []betaThing; return alpha.Find(&b).Error },
		"update":  func() error { return alpha.Model(&betaThing{}).Where("id = ?", "1").Update("n", 2).Error },
		"delete":  func() error { return alpha.Where("id = ?", "1").Delete(&betaThing{}).Error },
		"raw":     func() error { return alpha.Exec("UPDATE beta_things SET n = 1").Error },
		"raw row": func() error { var n int; return alpha.Raw("SELECT count(*) FROM BETA_THINGS").Scan(&n).Error },
		"join": func() error {
			var a []alphaThing
			return alpha.Joins("JOIN beta_things ON beta_things.id = alpha_things.id").Find(&a).Error
		},
		"in a transaction": func() error {
			return store.InTx(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
				return tx.Create(&betaThing{ID: "2"}).Error
			})
		},
	}
	for name, f := range tests {
		if err := f(); !errors.Is(err, store.ErrBoundary) {
			t.Errorf("%s on another module's table: err = %v, want ErrBoundary", name, err)
		}
	}
	var n int64
	db.Table("beta_things").Count(&n)
	if n != 0 {
		t.Errorf("a refused statement wrote %d rows", n)
	}
}

func TestSharedTransactionSwitchesModule(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	alpha, beta := store.Handle(db, "alpha"), store.Handle(db, "beta")
	boom := errors.New("boom")
	err := store.InTx(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Create(&alphaThing{ID: "1"}).Error; err != nil {
			return err
		}
		// beta joins alpha's transaction under its own identity.
		err := store.InTx(ctx, beta, func(ctx context.Context, tx *gorm.DB) error {
			if !errors.Is(tx.Create(&alphaThing{ID: "x"}).Error, store.ErrBoundary) {
				t.Errorf("beta reached alpha's table through the shared transaction")
			}
			return tx.Create(&betaThing{ID: "1"}).Error
		})
		if err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	var na, nb int64
	db.Table("alpha_things").Count(&na)
	db.Table("beta_things").Count(&nb)
	if na != 0 || nb != 0 {
		t.Errorf("rollback left rows: alpha %d, beta %d", na, nb)
	}
}

func TestOpenRejectsUnknownDSN(t *testing.T) {
	if _, err := store.Open(context.Background(), "mysql://x", store.Options{}); err == nil {
		t.Fatal("mysql DSN accepted")
	}
}

func TestOnCommitRunsAfterCommitsOnly(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int64
	if !store.OnCommit(db, func() { commits.Add(1) }) {
		t.Fatal("OnCommit found no write queue on a SQLite database")
	}
	if err := store.InTx(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Create(&alphaThing{ID: "1"}).Error
	}); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Fatalf("after one commit the hook ran %d times", n)
	}
	boom := errors.New("boom")
	if err := store.InTx(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Create(&alphaThing{ID: "2"}).Error; err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("a rolled-back transaction ran the hook (%d runs)", n)
	}
}
