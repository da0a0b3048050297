package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
)

// Status is where one capability's migration in one direction stands, as its target database
// records it: what a dashboard shows.
type Status struct {
	Capability string
	Direction  Direction
	// Source is the database the backfill copied from.
	Source string
	// SyncFrom is the stream position backfill recorded; SyncedTo the one sync has reached.
	SyncFrom, SyncedTo uint64
	EventsApplied      int64
	BackfillStarted    time.Time
	// BackfillDone is nil while the backfill has not finished.
	BackfillDone *time.Time
	// SyncedAt is when sync last applied a batch, LastEventAt the time of the newest event
	// it applied; nil before the first.
	SyncedAt, LastEventAt *time.Time
	// Holder is the process running a backfill or sync now, "" when none holds the claim.
	Holder string
	Tables []TableStatus
	// Verify is the last verify's result; nil before the first.
	Verify *VerifyStatus
}

// TableStatus is where the copy of one table stands.
type TableStatus struct {
	Table string
	// Copied and Expected are the rows copied and the source's count when the copy began.
	Copied, Expected int64
	Done             bool
}

// VerifyStatus is the outcome of the last verify.
type VerifyStatus struct {
	At          time.Time
	Rows        int64
	Differences int64
	Summary     string
}

// ReadStatus returns the migrations whose target is db, or none when no migration ever
// wrote to it.
func ReadStatus(ctx context.Context, db *gorm.DB) ([]Status, error) {
	if err := db.WithContext(ctx).Exec("SELECT 1 FROM ficus_migrate_runs WHERE 1 = 0").Error; err != nil {
		return nil, nil
	}
	rows, err := db.WithContext(ctx).Raw(`SELECT capability, direction, source, sync_from, synced_to, events_applied,
		backfill_started_at, backfill_done_at, synced_at, last_event_at, holder, lease_until
		FROM ficus_migrate_runs ORDER BY capability, direction`).Rows()
	if err != nil {
		return nil, fmt.Errorf("reading migration status: %w", err)
	}
	var out []Status
	for rows.Next() {
		var s Status
		var dir string
		var from, to int64
		var until time.Time
		if err := rows.Scan(&s.Capability, &dir, &s.Source, &from, &to, &s.EventsApplied, &s.BackfillStarted,
			&s.BackfillDone, &s.SyncedAt, &s.LastEventAt, &s.Holder, &until); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading migration status: %w", err)
		}
		s.Direction, s.SyncFrom, s.SyncedTo = Direction(dir), uint64(from), uint64(to)
		if until.Before(time.Now()) {
			s.Holder = ""
		}
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading migration status: %w", err)
	}
	for i := range out {
		s := &out[i]
		trows, err := db.WithContext(ctx).Raw(`SELECT tbl, rows_copied, rows_expected, done_at FROM ficus_migrate_tables
			WHERE capability = ? AND direction = ?`, s.Capability, string(s.Direction)).Rows()
		if err != nil {
			return nil, fmt.Errorf("reading migration status: %w", err)
		}
		for trows.Next() {
			var t TableStatus
			var done *time.Time
			if err := trows.Scan(&t.Table, &t.Copied, &t.Expected, &done); err != nil {
				trows.Close()
				return nil, fmt.Errorf("reading migration status: %w", err)
			}
			t.Done = done != nil
			s.Tables = append(s.Tables, t)
		}
		trows.Close()
		if spec, err := Lookup(s.Capability); err == nil {
			slices.SortFunc(s.Tables, func(a, b TableStatus) int {
				return slices.IndexFunc(spec.Tables, func(t Table) bool { return t.Name == a.Table }) -
					slices.IndexFunc(spec.Tables, func(t Table) bool { return t.Name == b.Table })
			})
		}
		var v VerifyStatus
		err = db.WithContext(ctx).Raw(`SELECT verified_at, rows_compared, differences, summary FROM ficus_migrate_verifications
			WHERE capability = ? AND direction = ?`, s.Capability, string(s.Direction)).Row().Scan(&v.At, &v.Rows, &v.Differences, &v.Summary)
		switch {
		case err == nil:
			s.Verify = &v
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("reading migration status: %w", err)
		}
	}
	return out, nil
}
