package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ficus-project/ficus/cmd/ficus/internal/bench"
	"github.com/ficus-project/ficus/platform/migrate"
)

// benchMigrateCommand measures ficus migrate's backfill and verify against the monolith's
// own read of the same rows.
func benchMigrateCommand() *command {
	var opts bench.MigrateOptions
	return &command{
		name:    "migrate",
		summary: "backfill and verify rows/s, against the monolith's own read of the same rows",
		about: `Measures ficus migrate on the inventory capability, SQLite to SQLite: a fresh monolith
database with -n items, then, in the same run, the inventory module reading every item in
pages of -batch (its own read path, the baseline), a backfill of every item into a fresh
service database, and a verify of the copy. It prints rows/s, CPU per row and each figure's
ratio to the baseline.`,
		examples: []string{"ficus bench migrate", "ficus bench migrate -n 1000000 -batch 5000"},
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&opts.Rows, "n", 200_000, fmt.Sprintf("items in the monolith (at most %d)", bench.MaxMigrateRows))
			fs.IntVar(&opts.Batch, "batch", migrate.DefaultBatch, fmt.Sprintf("rows per batch, 1–%d", migrate.MaxBatch))
		},
		run: func(ctx context.Context, e env, _ []string) error {
			_, err := bench.Migrate(ctx, opts, e.stdout)
			return benchUsage("ficus bench migrate", bench.ErrMigrateOptions, err)
		},
	}
}
