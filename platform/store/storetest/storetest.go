// Package storetest gives tests a fresh database on either engine, so that one suite runs
// against SQLite and PostgreSQL alike.
//
// A test gets its database from DSN, which reads the engine from FICUS_TEST_ENGINE (sqlite by
// default). Postgres runs a package's tests again, as subtests, with that variable set to
// postgres. PostgreSQL databases are created on the server FICUS_TEST_POSTGRES names (a URL
// whose user may CREATE DATABASE; `make test-postgres` starts a throwaway one), one per test,
// and dropped when the test ends. Without that variable Postgres skips with one line saying
// how to run the suite; with FICUS_REQUIRE_POSTGRES=1 (as in CI) it fails instead.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Environment variables the helpers read.
const (
	// EnvEngine names the engine DSN gives databases on: sqlite (default) or postgres.
	EnvEngine = "FICUS_TEST_ENGINE"
	// EnvPostgres is the URL of a PostgreSQL server where tests may create databases.
	EnvPostgres = "FICUS_TEST_POSTGRES"
	// EnvRequirePostgres, set to 1, makes a missing PostgreSQL server fail the tests that
	// need it rather than skip them.
	EnvRequirePostgres = "FICUS_REQUIRE_POSTGRES"
)

// DSN returns the DSN of a new, empty database for t on the engine FICUS_TEST_ENGINE names:
// a SQLite file in t.TempDir(), or a PostgreSQL database dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	switch e := os.Getenv(EnvEngine); e {
	case "", "sqlite":
		return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case "postgres":
		return postgresDSN(t)
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", EnvEngine, e)
		return ""
	}
}

// Postgres runs tests, each as a subtest named after it, with FICUS_TEST_ENGINE=postgres, so
// that the databases they open through DSN are PostgreSQL ones. Call it from one test per
// package (TestPostgres) with the tests of the package's storage suite.
func Postgres(t *testing.T, tests ...func(*testing.T)) {
	t.Helper()
	if os.Getenv(EnvPostgres) == "" {
		msg := fmt.Sprintf("PostgreSQL suite not run: %s is not set. Run `make test-postgres` (it starts a throwaway server) or set %s=postgres://USER@HOST:PORT/postgres?sslmode=disable",
			EnvPostgres, EnvPostgres)
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("%s, and %s=1 requires it", msg, EnvRequirePostgres)
		}
		t.Skip(msg)
	}
	t.Setenv(EnvEngine, "postgres")
	for _, test := range tests {
		t.Run(funcName(test), test)
	}
}

func funcName(f func(*testing.T)) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	return name[strings.LastIndexByte(name, '.')+1:]
}

// postgresDSN creates a database for t on the server FICUS_TEST_POSTGRES names.
func postgresDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("%s=postgres but %s is not set", EnvEngine, EnvPostgres)
		}
		t.Skipf("%s=postgres but %s is not set: run `make test-postgres`", EnvEngine, EnvPostgres)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: invalid URL: %v", EnvPostgres, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "ficus_test_" + hex.EncodeToString(b[:])
	if err := exec(admin, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := exec(admin, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Error(err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// exec runs one statement on the server at url, on a connection of its own.
func exec(url, stmt string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvPostgres, err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	db := stdlib.OpenDB(*cfg)
	defer func(db *sql.DB) { _ = db.Close() }(db)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("test PostgreSQL server (%s): %s: %w", EnvPostgres, stmt, err)
	}
	return nil
}
