package store_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs the suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestMigrateAppliesOnceInOrder, TestMigratePicksTheEnginesFile, TestMigrateKeepsTheHistoryOfASplitVersion,
		TestConcurrentMigrationsApplyOnce, TestGuardKeepsModulesApart,
		TestUnitOfWorkSpansModules, TestAnEndedUnitOfWorkIsNotJoined, TestWriteJoinsOnlyItsOwnDatabase, TestOnCommitRunsAfterCommitsOnly,
		TestRefuseInTx, TestConcurrentWritersAllCommit,
		TestOpenExplainsAnUnreachableServer,
		// PostgreSQL's own: what SQLite's single writer makes moot.
		testRetriesSerializationFailures, testRetriesDeadlocks, testLockKeysOrdersCommits,
		testOpenExplainsAMissingDatabase,
	)
}

// open opens a new database for t.
func open(t *testing.T) *gorm.DB {
	t.Helper()
	return openAt(t, storetest.DSN(t))
}

// openAt opens the database at dsn, guarding modules alpha and beta, until t ends.
func openAt(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, store.Options{Modules: []string{"alpha", "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	return db
}

var schema = fstest.MapFS{
	"0001_init.sql": {Data: []byte("-- two tables\nCREATE TABLE alpha_things (id TEXT PRIMARY KEY, n BIGINT);\nCREATE TABLE beta_things (id TEXT PRIMARY KEY, n BIGINT);\n")},
	"0002_more.sql": {Data: []byte("ALTER TABLE alpha_things ADD COLUMN note TEXT;\n")},
}

type alphaThing struct {
	ID   string `gorm:"primaryKey"`
	N    int64
	Note string
}

func (alphaThing) TableName() string { return "alpha_things" }

type betaThing struct {
	ID string `gorm:"primaryKey"`
	N  int64
}

func (betaThing) TableName() string { return "beta_things" }

func migrated(t *testing.T) *gorm.DB {
	t.Helper()
	db := open(t)
	if err := store.Migrate(context.Background(), db, "test", schema, "."); err != nil {
		t.Fatal(err)
	}
	return db
}

func count(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Table(table).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

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
	bad := fstest.MapFS{"0003_broken.sql": {Data: []byte("CREATE TABLE alpha_more (id TEXT);\nCREATE TABLE;\n")}}
	if err := store.Migrate(ctx, db, "test", bad, "."); err == nil {
		t.Errorf("a broken migration was accepted")
	}
	db.Table("ficus_schema_migrations").Where("component = ?", "test").Count(&n)
	if n != 2 {
		t.Errorf("a failed migration was recorded")
	}
	if db.Migrator().HasTable("alpha_more") {
		t.Errorf("a failed migration left part of its work behind")
	}
}

// TestMigratePicksTheEnginesFile: a version may have one file per engine; each engine runs its
// own, and a version missing for the engine, or ambiguous, is refused before anything runs.
func TestMigratePicksTheEnginesFile(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	engine := store.EngineName(db)
	fsys := fstest.MapFS{
		"0001_seq.sqlite.sql":   {Data: []byte("CREATE TABLE alpha_seq (seq INTEGER PRIMARY KEY AUTOINCREMENT, engine TEXT);\nINSERT INTO alpha_seq (engine) VALUES ('sqlite');\n")},
		"0001_seq.postgres.sql": {Data: []byte("CREATE TABLE alpha_seq (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, engine TEXT);\nINSERT INTO alpha_seq (engine) VALUES ('postgres');\n")},
		"0002_more.sql":         {Data: []byte("INSERT INTO alpha_seq (engine) VALUES ('both');\n")},
	}
	if err := store.Migrate(ctx, db, "seq", fsys, "."); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := db.Raw(`SELECT engine FROM alpha_seq ORDER BY seq`).Scan(&got).Error; err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != engine+",both" {
		t.Errorf("%s ran %v", engine, got)
	}
	var name string
	db.Raw(`SELECT name FROM ficus_schema_migrations WHERE component = 'seq' AND version = 1`).Scan(&name)
	if name != "0001_seq."+engine+".sql" {
		t.Errorf("recorded %q for version 1", name)
	}
	for what, fsys := range map[string]fstest.MapFS{
		"missing for this engine": {"0001_x.mysql.sql": {Data: []byte("SELECT 1;")}},
		"only the other engine's": {"0001_x.sqlite.sql": {Data: []byte("SELECT 1;")}, "0001_x.postgres.sql": {Data: []byte("SELECT 1;")}, "0002_y." + other(engine) + ".sql": {Data: []byte("SELECT 1;")}},
		"portable and per engine": {"0001_x.sql": {Data: []byte("SELECT 1;")}, "0001_x." + engine + ".sql": {Data: []byte("SELECT 1;")}},
		"two portable files":      {"0001_x.sql": {Data: []byte("SELECT 1;")}, "0001_y.sql": {Data: []byte("SELECT 1;")}},
		"badly named":             {"first.sql": {Data: []byte("SELECT 1;")}},
	} {
		if err := store.Migrate(ctx, db, "bad", fsys, "."); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	var n int64
	db.Table("ficus_schema_migrations").Where("component = ?", "bad").Count(&n)
	if n != 0 {
		t.Errorf("a refused set of migrations applied %d", n)
	}
}

// TestMigrateKeepsTheHistoryOfASplitVersion: a database migrated when a version had one
// portable file (as the outbox's and idempotency's 0001 had before PostgreSQL) does not run it
// again once the version is split into per-engine files.
func TestMigrateKeepsTheHistoryOfASplitVersion(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	before := fstest.MapFS{"0001_x.sql": {Data: []byte("CREATE TABLE alpha_x (id TEXT PRIMARY KEY);\n")}}
	if err := store.Migrate(ctx, db, "split", before, "."); err != nil {
		t.Fatal(err)
	}
	after := fstest.MapFS{
		"0001_x.sqlite.sql":   {Data: []byte("CREATE TABLE alpha_x (id TEXT PRIMARY KEY);\n")},
		"0001_x.postgres.sql": {Data: []byte("CREATE TABLE alpha_x (id TEXT PRIMARY KEY);\n")},
		"0002_y.sql":          {Data: []byte("ALTER TABLE alpha_x ADD COLUMN note TEXT;\n")},
	}
	if err := store.Migrate(ctx, db, "split", after, "."); err != nil {
		t.Fatalf("the split version ran again, or failed: %v", err)
	}
	if err := db.Exec(`INSERT INTO alpha_x (id, note) VALUES ('1', 'from 0002')`).Error; err != nil {
		t.Errorf("0002 was not applied: %v", err)
	}
}

// TestConcurrentMigrationsApplyOnce: two processes starting at once on one database (here two
// connection pools) both migrate it, and each migration runs once.
func TestConcurrentMigrationsApplyOnce(t *testing.T) {
	dsn := storetest.DSN(t)
	ctx := context.Background()
	errs := make(chan error, 2)
	for range 2 {
		db := openAt(t, dsn)
		go func() { errs <- store.Migrate(ctx, db, "test", schema, ".") }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	db := openAt(t, dsn)
	var n int64
	db.Table("ficus_schema_migrations").Where("component = ?", "test").Count(&n)
	if n != 2 {
		t.Errorf("recorded %d migrations, want 2", n)
	}
}

func other(engine string) string {
	if engine == "sqlite" {
		return "postgres"
	}
	return "sqlite"
}

func TestGuardKeepsModulesApart(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
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
		"in a unit of work": func() error {
			return store.Write(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
				return tx.Create(&betaThing{ID: "2"}).Error
			})
		},
		"through Conn in a unit of work": func() error {
			return store.Write(ctx, alpha, func(ctx context.Context, _ *gorm.DB) error {
				return store.Conn(ctx, alpha).Create(&betaThing{ID: "3"}).Error
			})
		},
	}
	for name, f := range tests {
		if err := f(); !errors.Is(err, store.ErrBoundary) {
			t.Errorf("%s on another module's table: err = %v, want ErrBoundary", name, err)
		}
	}
	if n := count(t, db, "beta_things"); n != 0 {
		t.Errorf("a refused statement wrote %d rows", n)
	}
}

// TestUnitOfWorkSpansModules: a module's Write made with the ctx of another's joins its
// transaction under its own identity (the module setting travels with the handle, through
// gorm's public Set/Get), and everything rolls back together.
func TestUnitOfWorkSpansModules(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	alpha, beta := store.Handle(db, "alpha"), store.Handle(db, "beta")
	boom := errors.New("boom")
	err := store.Write(ctx, alpha, func(ctx context.Context, tx *gorm.DB) error {
		if !store.InTx(ctx) {
			t.Error("the ctx of a unit of work does not say so")
		}
		if err := tx.Create(&alphaThing{ID: "1"}).Error; err != nil {
			return err
		}
		// beta joins alpha's transaction under its own identity.
		err := store.Write(ctx, beta, func(ctx context.Context, tx *gorm.DB) error {
			if !errors.Is(tx.Create(&alphaThing{ID: "x"}).Error, store.ErrBoundary) {
				t.Errorf("beta reached alpha's table through the shared transaction")
			}
			return tx.Create(&betaThing{ID: "1"}).Error
		})
		if err != nil {
			return err
		}
		// Reads through Conn see the unit's own uncommitted work.
		var n int64
		if err := store.Conn(ctx, beta).Table("beta_things").Count(&n).Error; err != nil || n != 1 {
			t.Errorf("Conn in the unit of work sees %d rows (%v), want 1", n, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if store.InTx(ctx) {
		t.Error("the caller's ctx claims a unit of work")
	}
	if na, nb := count(t, db, "alpha_things"), count(t, db, "beta_things"); na != 0 || nb != 0 {
		t.Errorf("rollback left rows: alpha %d, beta %d", na, nb)
	}
}

// TestAnEndedUnitOfWorkIsNotJoined: a context kept beyond its unit of work (by a goroutine the
// unit started) carries no open unit any more; a Write made with it runs on its own.
func TestAnEndedUnitOfWorkIsNotJoined(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	var kept context.Context
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		kept = ctx
		return tx.Create(&alphaThing{ID: "1"}).Error
	}); err != nil {
		t.Fatal(err)
	}
	if store.InTx(kept) {
		t.Error("InTx reports an open unit of work after it committed")
	}
	if err := store.Write(kept, db, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Create(&alphaThing{ID: "2"}).Error
	}); err != nil {
		t.Fatalf("a Write with the kept context: %v", err)
	}
	if n := count(t, db, "alpha_things"); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

// TestWriteJoinsOnlyItsOwnDatabase: a unit of work on one database is not joined by a Write
// on another (a consumer applying events to its database while reading another's).
func TestWriteJoinsOnlyItsOwnDatabase(t *testing.T) {
	one, two := migrated(t), migrated(t)
	ctx := context.Background()
	boom := errors.New("boom")
	err := store.Write(ctx, one, func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Create(&alphaThing{ID: "1"}).Error; err != nil {
			return err
		}
		if err := store.Write(ctx, two, func(_ context.Context, tx *gorm.DB) error {
			return tx.Create(&alphaThing{ID: "2"}).Error
		}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := count(t, one, "alpha_things"); n != 0 {
		t.Errorf("database one kept %d rows of a rolled-back unit of work", n)
	}
	if n := count(t, two, "alpha_things"); n != 1 {
		t.Errorf("database two has %d rows, want the 1 its own Write committed", n)
	}
}

func TestOpenRejectsUnknownDSN(t *testing.T) {
	_, err := store.Open(context.Background(), "mysql://me:hunter2@x/db", store.Options{})
	if err == nil {
		t.Fatal("mysql DSN accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
}

func TestOnCommitRunsAfterCommitsOnly(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	var commits atomic.Int64
	store.OnCommit(db, func() { commits.Add(1) })
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Create(&alphaThing{ID: "1"}).Error
	}); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Fatalf("after one commit the hook ran %d times", n)
	}
	boom := errors.New("boom")
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
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
	store.OnCommit(db, nil)
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Create(&alphaThing{ID: "3"}).Error
	}); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("a removed hook ran (%d runs)", n)
	}
}

// TestRefuseInTx: an HTTP call made with the context of a unit of work is refused before
// anything is sent; the same call outside one goes through.
func TestRefuseInTx(t *testing.T) {
	db := migrated(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: store.RefuseInTx(nil)}
	get := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/payments", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	ctx := context.Background()
	var inside error
	err := store.Write(ctx, store.Handle(db, "alpha"), func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Create(&alphaThing{ID: "1"}).Error; err != nil {
			return err
		}
		inside = get(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inside, store.ErrNetworkInTx) {
		t.Fatalf("a call inside a unit of work: err = %v, want ErrNetworkInTx", inside)
	}
	if !strings.Contains(inside.Error(), "POST") || !strings.Contains(inside.Error(), "/api/payments") {
		t.Errorf("the error does not say which call: %v", inside)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused call reached the server (%d requests)", n)
	}
	if err := get(ctx); err != nil {
		t.Fatalf("a call outside any unit of work: %v", err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the server got %d requests, want 1", n)
	}
}
