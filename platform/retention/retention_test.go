package retention_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/retention"
	"github.com/ficus-project/ficus/platform/store"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// openDB opens a SQLite database in the test's directory with a table of timestamped rows:
// old ones (an hour before t0) and young ones (at t0).
func openDB(t *testing.T, old, young int) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "r.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	if err := db.Exec(`CREATE TABLE ficus_test_rows (id INTEGER PRIMARY KEY, at TIMESTAMP NOT NULL)`).Error; err != nil {
		t.Fatal(err)
	}
	for i := range old + young {
		at := t0.Add(-time.Hour)
		if i >= old {
			at = t0
		}
		if err := db.Exec(`INSERT INTO ficus_test_rows (id, at) VALUES (?, ?)`, i+1, at).Error; err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// rowsRule prunes ficus_test_rows.
var rowsRule = retention.Rule{Table: "ficus_test_rows", Keep: 30 * time.Minute, Prune: func(tx *gorm.DB, cutoff time.Time, limit int) (int64, error) {
	res := tx.Exec(`DELETE FROM ficus_test_rows WHERE id IN (SELECT id FROM ficus_test_rows WHERE at < ? ORDER BY at LIMIT ?)`, cutoff, limit)
	return res.RowsAffected, res.Error
}}

func count(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM ficus_test_rows`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRoundIsBounded: a round deletes at most MaxBatches batches per table and says when there
// is more; the next round goes on, and young rows stay.
func TestRoundIsBounded(t *testing.T) {
	db := openDB(t, 25, 5)
	reg := prometheus.NewRegistry()
	p := retention.NewPruner(db, retention.Options{Name: "shop", BatchSize: 10, MaxBatches: 2, Registerer: reg, Now: func() time.Time { return t0 }}, rowsRule)
	ctx := context.Background()
	for i, want := range []retention.Result{
		{Pruned: map[string]int64{"ficus_test_rows": 20}, More: true},
		{Pruned: map[string]int64{"ficus_test_rows": 5}},
		{Pruned: map[string]int64{"ficus_test_rows": 0}},
	} {
		got, err := p.Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.More != want.More || got.Pruned["ficus_test_rows"] != want.Pruned["ficus_test_rows"] {
			t.Fatalf("round %d = %+v, want %+v", i+1, got, want)
		}
	}
	if n := count(t, db); n != 5 {
		t.Errorf("%d rows left, want the 5 young ones", n)
	}
	if v := counter(t, reg, "ficus_retention_pruned_rows_total", "shop", "ficus_test_rows"); v != 25 {
		t.Errorf("ficus_retention_pruned_rows_total = %v, want 25", v)
	}
}

// TestFailingRuleDoesNotStopOthers: one table failing to prune is reported and counted, and the
// other tables are pruned all the same.
func TestFailingRuleDoesNotStopOthers(t *testing.T) {
	db := openDB(t, 3, 0)
	reg := prometheus.NewRegistry()
	broken := retention.Rule{Table: "ficus_missing", Keep: time.Hour, Prune: func(tx *gorm.DB, _ time.Time, _ int) (int64, error) {
		return 0, tx.Exec(`DELETE FROM ficus_missing`).Error
	}}
	p := retention.NewPruner(db, retention.Options{Registerer: reg, Now: func() time.Time { return t0 }}, broken, rowsRule)
	res, err := p.Round(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pruning ficus_missing") {
		t.Errorf("Round = %v, want the failure of ficus_missing", err)
	}
	if res.Pruned["ficus_test_rows"] != 3 || count(t, db) != 0 {
		t.Errorf("pruned %v, want ficus_test_rows pruned despite the other rule", res.Pruned)
	}
	if v := counter(t, reg, "ficus_retention_errors_total", "db", "ficus_missing"); v != 1 {
		t.Errorf("ficus_retention_errors_total = %v, want 1", v)
	}
}

func TestInvalidRuleIsRefused(t *testing.T) {
	db := openDB(t, 0, 0)
	p := retention.NewPruner(db, retention.Options{}, retention.Rule{Table: "ficus_test_rows", Prune: rowsRule.Prune})
	if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "positive Keep") {
		t.Errorf("Run with a rule without Keep = %v, want it refused", err)
	}
}

// TestRunCatchesUp: Run prunes at once, then again after CatchUp rather than Interval while a
// round leaves rows behind, and returns when its context ends.
func TestRunCatchesUp(t *testing.T) {
	db := openDB(t, 20, 1)
	p := retention.NewPruner(db, retention.Options{Interval: time.Hour, CatchUp: 5 * time.Millisecond, BatchSize: 5, MaxBatches: 1, Now: func() time.Time { return t0 }}, rowsRule)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for count(t, db) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows left after 5s, want 1: Run did not catch up", count(t, db))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter returns the value of the pruner counter name for database and table in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, database, table string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["database"] == database && labels["table"] == table {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{database=%q, table=%q} in the registry", name, database, table)
	return 0
}
