package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/migrate"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// dashboardSagaPage bounds the unfinished sagas of each state the dashboard lists.
const dashboardSagaPage = 10

// systemReader is the facade's facade.System under ficus serve facade: it reads the outboxes,
// the order sagas and the data migrations from the databases config.yaml names, directly and
// read-only, as ficus sagas list and ficus migrate do. The facade package cannot do it
// itself: it must not import the monolith, whose orders module owns the saga table.
//
// It keeps each database open between reads (a dashboard polls every two seconds) and closes
// the ones a reloaded config no longer names. A SQLite file that does not exist yet is not
// created: its component has not run, and the dashboard says so.
type systemReader struct {
	mu  sync.Mutex
	dbs map[string]*gorm.DB // by DSN
}

var _ facade.System = (*systemReader)(nil)

func newSystemReader() *systemReader { return &systemReader{dbs: map[string]*gorm.DB{}} }

// database is one database config.yaml names, by the component that owns it.
type database struct {
	name, dsn string
}

// databases lists the monolith's database, then each service's, by name.
func databases(cfg *config.Config) []database {
	out := []database{{"monolith", cfg.Monolith.Database}}
	names := make([]string, 0, len(cfg.Services))
	for name := range cfg.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		out = append(out, database{name, cfg.Services[name].Database})
	}
	return out
}

// errNoDatabase says a SQLite database file does not exist yet.
var errNoDatabase = errors.New("no database yet: its component has not run")

// open returns the database at dsn, opening it on first use.
func (r *systemReader) open(ctx context.Context, cfg *config.Config, dsn string) (*gorm.DB, error) {
	if db, ok := r.dbs[dsn]; ok {
		return db, nil
	}
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		if _, err := os.Stat(cfg.Resolve(path)); errors.Is(err, fs.ErrNotExist) {
			return nil, errNoDatabase
		}
	}
	db, err := store.Open(ctx, dsn, store.Options{Resolve: cfg.Resolve, MaxOpenConns: 2})
	if err != nil {
		return nil, err
	}
	r.dbs[dsn] = db
	return db, nil
}

// Status reads what the dashboard shows of the databases cfg names. What it cannot read it
// reports line by line in the answer; it never fails as a whole.
func (r *systemReader) Status(ctx context.Context, cfg *config.Config) facade.SystemStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := facade.SystemStatus{Time: time.Now().UTC(), Outboxes: []facade.OutboxStatus{}, Migrations: []facade.MigrationStatus{}}
	named := map[string]bool{}
	for _, d := range databases(cfg) {
		named[d.dsn] = true
		db, err := r.open(ctx, cfg, d.dsn)
		if err != nil {
			msg := err.Error()
			if !errors.Is(err, errNoDatabase) {
				msg = "cannot open: " + msg
			}
			st.Outboxes = append(st.Outboxes, facade.OutboxStatus{Database: d.name, Error: msg})
			if d.name == "monolith" {
				st.Sagas = &facade.SagaStatus{Counts: map[string]int64{}, Active: []facade.SagaSummary{}, Error: msg}
			}
			continue
		}
		st.Outboxes = append(st.Outboxes, readOutbox(ctx, d.name, db))
		if d.name == "monolith" {
			s := readSagas(ctx, db)
			st.Sagas = &s
		}
		migs, err := migrate.ReadStatus(ctx, db)
		if err != nil {
			st.Errors = append(st.Errors, fmt.Sprintf("%s database: %v", d.name, err))
		}
		for _, m := range migs {
			st.Migrations = append(st.Migrations, migrationStatus(d.name, m))
		}
	}
	// A reload may have pointed a component at another database: let go of the old one.
	for dsn, db := range r.dbs {
		if !named[dsn] {
			_ = store.Close(db)
			delete(r.dbs, dsn)
		}
	}
	return st
}

// Close closes the databases the reader holds open.
func (r *systemReader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dsn, db := range r.dbs {
		_ = store.Close(db)
		delete(r.dbs, dsn)
	}
}

func readOutbox(ctx context.Context, name string, db *gorm.DB) facade.OutboxStatus {
	o := facade.OutboxStatus{Database: name}
	if !db.WithContext(ctx).Migrator().HasTable(outbox.Table) {
		o.Error = "no outbox yet: its component has not run"
		return o
	}
	n, oldest, err := outbox.Backlog(ctx, db)
	if err != nil {
		o.Error = err.Error()
		return o
	}
	o.Backlog = n
	if !oldest.IsZero() {
		o.Oldest = &oldest
	}
	return o
}

// readSagas counts the sagas by state and lists a page of the unfinished ones of each state,
// stuck first.
func readSagas(ctx context.Context, db *gorm.DB) facade.SagaStatus {
	s := facade.SagaStatus{Counts: map[string]int64{}, Active: []facade.SagaSummary{}}
	if !db.WithContext(ctx).Migrator().HasTable("orders_sagas") {
		s.Error = "no saga table yet: the monolith has not run"
		return s
	}
	counts, err := orders.CountSagas(ctx, db)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Counts = counts
	for _, state := range []string{orders.SagaStuck, orders.SagaCompensating, orders.SagaRunning} {
		if counts[state] == 0 {
			continue
		}
		sagas, err := orders.ListSagas(ctx, db, state, "", dashboardSagaPage)
		if err != nil {
			s.Error = err.Error()
			return s
		}
		s.More = s.More || counts[state] > int64(len(sagas))
		for _, sg := range sagas {
			sum := facade.SagaSummary{Order: sg.ID, Kind: sg.Kind, State: sg.State, Updated: sg.UpdatedAt}
			if st := focus(sg); st != nil {
				sum.Step, sum.Attempts, sum.Error = st.Name, st.Attempts, st.Error
			}
			if sg.Reason != nil {
				sum.Reason = sg.Reason.Code
			}
			s.Active = append(s.Active, sum)
		}
	}
	return s
}

func migrationStatus(target string, m migrate.Status) facade.MigrationStatus {
	out := facade.MigrationStatus{Capability: m.Capability, Direction: string(m.Direction), Target: target,
		Tables: []facade.MigrationTable{}, BackfillDone: m.BackfillDone, SyncFrom: m.SyncFrom, SyncedTo: m.SyncedTo,
		EventsApplied: m.EventsApplied, SyncedAt: m.SyncedAt, Running: m.Holder}
	if m.SyncedAt != nil && m.LastEventAt != nil {
		lag := max(m.SyncedAt.Sub(*m.LastEventAt), 0).Seconds()
		out.Lag = &lag
	}
	for _, t := range m.Tables {
		out.Tables = append(out.Tables, facade.MigrationTable{Table: t.Table, Copied: t.Copied, Expected: t.Expected, Done: t.Done})
	}
	if v := m.Verify; v != nil {
		out.Verify = &facade.MigrationVerify{At: v.At, Rows: v.Rows, Differences: v.Differences, Summary: v.Summary}
	}
	return out
}
