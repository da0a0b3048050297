package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMigrateMeasuresAgainstTheBaseline runs the migrate benchmark small: every measurement
// covers every row, and the table prints each with its ratio to the baseline.
func TestMigrateMeasuresAgainstTheBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	results, err := Migrate(ctx, MigrateOptions{Rows: 2500, Batch: 300, Dir: t.TempDir()}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	if len(results) != 3 {
		t.Fatalf("%d measurements, want baseline, backfill, verify:\n%s", len(results), &out)
	}
	for _, r := range results {
		if r.Rows != 2500 || r.PerSecond() <= 0 {
			t.Errorf("%s: %d rows at %.0f/s, want all 2500", r.What, r.Rows, r.PerSecond())
		}
	}
	for _, want := range []string{"monolith reads (baseline)", "backfill", "verify", "× baseline"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &out)
		}
	}
	if _, err := Migrate(ctx, MigrateOptions{Rows: -1}, &out); !errors.Is(err, ErrMigrateOptions) {
		t.Errorf("-n -1: %v, want ErrMigrateOptions", err)
	}
}
