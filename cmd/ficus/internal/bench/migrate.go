package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/migrate"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// MaxMigrateRows bounds MigrateOptions.Rows.
const MaxMigrateRows = 10_000_000

// ErrMigrateOptions wraps every mistake in MigrateOptions.
var ErrMigrateOptions = errors.New("bench migrate")

// MigrateOptions shape a run of Migrate. Every field works at its zero value.
type MigrateOptions struct {
	// Rows is how many inventory items the monolith holds. Default 200,000; at most
	// MaxMigrateRows.
	Rows int
	// Batch is the rows per batch of every measurement. Default migrate.DefaultBatch.
	Batch int
	// Dir is where the SQLite files go. Default: a temporary directory, removed afterwards.
	Dir string
}

// MigrateResult is one measurement of Migrate.
type MigrateResult struct {
	What    string
	Rows    int64
	Elapsed time.Duration
	// CPU is this process's CPU time over the measurement.
	CPU time.Duration
}

// PerSecond is the measurement's rows/s.
func (r MigrateResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// Migrate measures ficus migrate's backfill and verify on the inventory capability, SQLite to
// SQLite, with the monolith's own read of the same rows as the baseline of the same run: the
// inventory module paging through every item (Service.Items, as GET /api/inventory/items
// does), in pages of the same size as the batches. It prints rows/s, CPU per row and each
// figure's ratio to the baseline, and returns the measurements.
//
// The backfill records a stream position without a bus (there are no events to follow): it
// measures the copy, which is all a backfill does after that one read.
func Migrate(ctx context.Context, opts MigrateOptions, stdout io.Writer) ([]MigrateResult, error) {
	if opts.Rows == 0 {
		opts.Rows = 200_000
	}
	if opts.Batch == 0 {
		opts.Batch = migrate.DefaultBatch
	}
	if opts.Rows < 1 || opts.Rows > MaxMigrateRows {
		return nil, fmt.Errorf("%w: -n %d is not between 1 and %d", ErrMigrateOptions, opts.Rows, MaxMigrateRows)
	}
	if opts.Batch < 1 || opts.Batch > migrate.MaxBatch {
		return nil, fmt.Errorf("%w: -batch %d is not between 1 and %d", ErrMigrateOptions, opts.Batch, migrate.MaxBatch)
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "ficus-bench-migrate-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	fmt.Fprintf(stdout, "migrate: %d inventory items, batches of %d, SQLite to SQLite (fresh files in %s)\n", opts.Rows, opts.Batch, opts.Dir)
	mono, err := benchDB(ctx, filepath.Join(opts.Dir, "monolith.db"))
	if err != nil {
		return nil, err
	}
	defer store.Close(mono)
	svc, err := benchDB(ctx, filepath.Join(opts.Dir, "inventory.db"))
	if err != nil {
		return nil, err
	}
	defer store.Close(svc)
	if err := seedItems(ctx, mono, opts.Rows); err != nil {
		return nil, err
	}

	var results []MigrateResult
	measure := func(what string, fn func() (int64, error)) error {
		cpu, start := ProcessCPU(), time.Now()
		n, err := fn()
		if err != nil {
			return fmt.Errorf("bench migrate, %s: %w", what, err)
		}
		results = append(results, MigrateResult{What: what, Rows: n, Elapsed: time.Since(start), CPU: ProcessCPU() - cpu})
		return nil
	}
	inv := inventory.New(mono)
	if err := measure("monolith reads (baseline)", func() (int64, error) {
		var n int64
		after := ""
		for {
			items, err := inv.Items(ctx, after, opts.Batch)
			if err != nil {
				return n, err
			}
			n += int64(len(items))
			if len(items) < opts.Batch {
				return n, nil
			}
			after = items[len(items)-1].SKU
		}
	}); err != nil {
		return nil, err
	}
	m, err := migrate.New(migrate.Inventory(), migrate.Forward,
		migrate.Side{Name: "monolith", DB: mono, Identity: "bench-monolith"},
		migrate.Side{Name: "service", DB: svc, Identity: "bench-service"},
		migrate.Options{Batch: opts.Batch})
	if err != nil {
		return nil, err
	}
	if err := measure("backfill", func() (int64, error) {
		res, err := m.Backfill(ctx, noBus{}, migrate.BackfillOptions{})
		return res.Rows, err
	}); err != nil {
		return nil, err
	}
	if err := measure("verify", func() (int64, error) {
		rep, err := m.Verify(ctx, migrate.VerifyOptions{})
		if err == nil && !rep.Clean() {
			err = fmt.Errorf("the copy differs: %s", rep.Summary())
		}
		return rep.Rows(), err
	}); err != nil {
		return nil, err
	}
	writeMigrateTable(stdout, results)
	return results, nil
}

// noBus is a stream that stands at its beginning: the bench copies without events.
type noBus struct{}

func (noBus) Position(context.Context) (bus.Position, error) { return bus.Position{First: 1}, nil }

func writeMigrateTable(w io.Writer, results []MigrateResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  what\trows\ttime\trows/s\tCPU µs/row\t× baseline\t")
	base := results[0].PerSecond()
	for _, r := range results {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%.0f\t%.1f\t%.2f\t\n", r.What, r.Rows, r.Elapsed.Round(time.Millisecond), r.PerSecond(),
			float64(r.CPU.Microseconds())/float64(max(r.Rows, 1)), r.PerSecond()/max(base, 1))
	}
	_ = tw.Flush()
}

// benchDB opens a fresh SQLite file with the inventory tables (the module's migrations: the
// service's tables have the same names and columns).
func benchDB(ctx context.Context, path string) (*gorm.DB, error) {
	db, err := store.Open(ctx, "sqlite:"+path, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench migrate: %w", err)
	}
	for _, mig := range []func(context.Context, *gorm.DB) error{outbox.Migrate, inventory.Migrate} {
		if err := mig(ctx, db); err != nil {
			store.Close(db)
			return nil, fmt.Errorf("bench migrate: %w", err)
		}
	}
	return db, nil
}

// seedItems inserts n items, 500 to a statement, 20 statements to a transaction.
func seedItems(ctx context.Context, db *gorm.DB, n int) error {
	now := time.Now().UTC()
	for start := 0; start < n; start += 10_000 {
		err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			for s := start; s < min(start+10_000, n); s += 500 {
				var q strings.Builder
				q.WriteString("INSERT INTO inventory_items (sku, name, price_cents, on_hand, reserved, version, updated_at) VALUES ")
				args := make([]any, 0, 500*5)
				for i := s; i < min(s+500, n); i++ {
					if i > s {
						q.WriteString(", ")
					}
					q.WriteString("(?, ?, ?, ?, 0, 1, ?)")
					args = append(args, fmt.Sprintf("SKU-%08d", i), fmt.Sprintf("Bench item %d", i), int64(100+i%10_000), 1+i%500, now)
				}
				if err := tx.Exec(q.String(), args...).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bench migrate: seeding items: %w", err)
		}
	}
	return nil
}
