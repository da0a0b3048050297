package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/store"
)

// Stream is what Backfill needs of the event bus: where its events stream stands.
// *bus.Bus is one.
type Stream interface {
	Position(ctx context.Context) (bus.Position, error)
}

// BackfillOptions tune one Backfill. The zero value resumes where the last one stopped.
type BackfillOptions struct {
	// Restart discards the target's checkpoint (not its rows) and copies everything again
	// from a new position of the events stream.
	Restart bool
}

// TableCopy is what a backfill did to one table.
type TableCopy struct {
	Table string
	// Rows were copied by this run; Total by every run since the checkpoint was made.
	Rows, Total int64
	// Already is set when an earlier run had finished the table.
	Already bool
}

// BackfillResult is what a Backfill did.
type BackfillResult struct {
	Tables []TableCopy
	// Rows were copied by this run, in Elapsed.
	Rows    int64
	Elapsed time.Duration
	// SyncFrom is the events stream's sequence recorded before the first batch: sync
	// applies the events after it.
	SyncFrom uint64
	// Resumed is set when the run continued an interrupted backfill; AlreadyDone when an
	// earlier one had finished and there was nothing to copy.
	Resumed, AlreadyDone bool
}

// RowsPerSecond is the run's copy rate.
func (r BackfillResult) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// Backfill copies every row of the capability's tables from the source to the target, in
// batches of Options.Batch rows paged by primary key, upserting (a row never replaces one of
// a higher version). Before the first batch it records the events stream's last sequence in
// the target: every change made after the copy began has an event after it, which Sync
// applies. Each batch commits together with its checkpoint (the last key copied), so a
// Backfill interrupted at any point — killed, even — continues after the last committed
// batch when run again. A row that refers to another table's row (a reservation line to its
// item) is written after that row, copied first if the target lacks it.
func (m *Migration) Backfill(ctx context.Context, stream Stream, opts BackfillOptions) (BackfillResult, error) {
	start := time.Now()
	res := BackfillResult{}
	if err := m.prepare(ctx); err != nil {
		return res, err
	}
	r, err := m.loadRun(ctx)
	if err != nil {
		return res, err
	}
	if opts.Restart && r.found {
		if err := m.claim(ctx, r); err != nil {
			return res, err
		}
		if err := m.forget(ctx); err != nil {
			return res, err
		}
		r = run{}
	}
	if r.found {
		if err := m.checkSource(r); err != nil {
			return res, err
		}
		if err := m.claim(ctx, r); err != nil {
			return res, err
		}
		res.Resumed = true
	} else if r, err = m.begin(ctx, stream); err != nil {
		return res, err
	}
	defer m.release(ctx)
	res.SyncFrom = r.SyncFrom
	if r.backfillIsDone {
		res.AlreadyDone, res.Resumed = true, false
	}
	for _, t := range m.spec.tables(m.dir) {
		c, err := m.copyTable(ctx, t)
		res.Rows += c.Rows
		if c.Table != "" {
			res.Tables = append(res.Tables, c)
		}
		if err != nil {
			res.Elapsed = time.Since(start)
			return res, err
		}
	}
	if !r.backfillIsDone {
		err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
			return m.renew(tx, "backfill_done_at = ?", m.now())
		})
		if err != nil {
			return res, fmt.Errorf("recording the finished backfill: %w", err)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// begin records a new migration run, its sync position first, and claims it.
func (m *Migration) begin(ctx context.Context, stream Stream) (run, error) {
	if stream == nil {
		return run{}, errors.New("backfill needs the event bus: it records where sync will start")
	}
	pos, err := stream.Position(ctx)
	if err != nil {
		return run{}, fmt.Errorf("reading where the events stream stands (sync starts there): %w", err)
	}
	now := m.now()
	var inserted bool
	err = store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO ficus_migrate_runs (capability, direction, source, sync_from, synced_to, events_applied,
				backfill_started_at, holder, lease_until)
			VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (capability, direction) DO NOTHING`,
			m.spec.Capability, string(m.dir), m.from.Identity, int64(pos.Last), int64(pos.Last), now, m.opts.Holder, now.Add(m.opts.LeaseTTL))
		inserted = res.RowsAffected == 1
		return res.Error
	})
	if err != nil {
		return run{}, fmt.Errorf("recording the backfill: %w", err)
	}
	if !inserted {
		return run{}, fmt.Errorf("%w: another process began a backfill of %s (%s) at the same moment", ErrBusy, m.spec.Capability, m.dir)
	}
	m.holder = m.opts.Holder
	m.log.Debug("backfill begins", "capability", m.spec.Capability, "direction", m.dir, "sync_from", pos.Last)
	return run{Source: m.from.Identity, SyncFrom: pos.Last, SyncedTo: pos.Last, BackfillStart: now, found: true}, nil
}

// forget deletes the target's checkpoint of this migration (not the rows it copied).
func (m *Migration) forget(ctx context.Context) error {
	err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM ficus_migrate_tables WHERE capability = ? AND direction = ?`, m.spec.Capability, string(m.dir)).Error; err != nil {
			return err
		}
		return tx.Exec(`DELETE FROM ficus_migrate_runs WHERE capability = ? AND direction = ?`, m.spec.Capability, string(m.dir)).Error
	})
	if err != nil {
		return fmt.Errorf("discarding the checkpoint: %w", err)
	}
	m.holder = ""
	return nil
}

// tableCheckpoint is where the copy of one table stands.
type tableCheckpoint struct {
	after          []any
	copied, expect int64
	done           bool
	found          bool
}

func (m *Migration) loadTable(ctx context.Context, t Table) (tableCheckpoint, error) {
	var (
		after  sql.NullString
		c      tableCheckpoint
		doneAt *time.Time
	)
	rows, err := m.to.DB.WithContext(ctx).Raw(`SELECT after_key, rows_copied, rows_expected, done_at FROM ficus_migrate_tables
		WHERE capability = ? AND direction = ? AND tbl = ?`, m.spec.Capability, string(m.dir), t.Name).Rows()
	if err != nil {
		return c, fmt.Errorf("reading the checkpoint of %s: %w", t.Name, err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&after, &c.copied, &c.expect, &doneAt); err != nil {
			return c, fmt.Errorf("reading the checkpoint of %s: %w", t.Name, err)
		}
		c.found, c.done = true, doneAt != nil
		if after.Valid {
			if c.after, err = decodeKey(after.String); err != nil {
				return c, err
			}
		}
	}
	return c, rows.Err()
}

// count returns how many rows t holds in db.
func count(ctx context.Context, db *gorm.DB, t Table) (int64, error) {
	var n int64
	if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM " + t.Name).Row().Scan(&n); err != nil {
		return 0, fmt.Errorf("counting %s: %w", t.Name, err)
	}
	return n, nil
}

// copyTable copies t from where its checkpoint stands to its end.
func (m *Migration) copyTable(ctx context.Context, t Table) (TableCopy, error) {
	out := TableCopy{Table: t.Name}
	c, err := m.loadTable(ctx, t)
	if err != nil {
		return out, err
	}
	if c.done {
		out.Total, out.Already = c.copied, true
		m.progress(Progress{Op: "backfill", Table: t.Name, Done: c.copied, Total: c.expect})
		return out, nil
	}
	if !c.found {
		if c.expect, err = count(ctx, m.from.DB, m.onSource(t)); err != nil {
			return out, err
		}
		err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO ficus_migrate_tables (capability, direction, tbl, rows_copied, rows_expected)
				VALUES (?, ?, ?, 0, ?)`, m.spec.Capability, string(m.dir), t.Name, c.expect).Error
		})
		if err != nil {
			return out, fmt.Errorf("recording the copy of %s: %w", t.Name, err)
		}
	}
	out.Total = c.copied
	m.progress(Progress{Op: "backfill", Table: t.Name, Done: c.copied, Total: c.expect})
	// The next page is read while the current one is written: the source's read and the
	// target's write overlap, on two cores.
	next := m.prefetch(ctx, t, c.after)
	for {
		pg := <-next
		if pg.err != nil {
			return out, pg.err
		}
		rows := pg.rows
		done := len(rows) < m.opts.Batch
		after := c.after
		if len(rows) > 0 {
			after = t.key(rows[len(rows)-1])
		}
		if !done {
			next = m.prefetch(ctx, t, after)
		}
		writes, err := m.withParents(ctx, t, rows)
		if err != nil {
			return out, err
		}
		keyJSON := sql.NullString{}
		if after != nil {
			s, err := encodeKey(after)
			if err != nil {
				return out, err
			}
			keyJSON = sql.NullString{String: s, Valid: true}
		}
		var doneAt *time.Time
		if done {
			now := m.now()
			doneAt = &now
		}
		err = store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
			for _, w := range writes {
				if err := upsert(tx, w.t, w.rows); err != nil {
					return err
				}
			}
			err := tx.Exec(`UPDATE ficus_migrate_tables SET after_key = ?, rows_copied = rows_copied + ?, done_at = ?
				WHERE capability = ? AND direction = ? AND tbl = ?`,
				keyJSON, len(rows), doneAt, m.spec.Capability, string(m.dir), t.Name).Error
			if err != nil {
				return fmt.Errorf("updating the checkpoint of %s: %w", t.Name, err)
			}
			return m.renew(tx, "")
		})
		if err != nil {
			return out, fmt.Errorf("copying %s: %w", t.Name, err)
		}
		c.after, c.copied = after, c.copied+int64(len(rows))
		out.Rows += int64(len(rows))
		out.Total = c.copied
		m.progress(Progress{Op: "backfill", Table: t.Name, Done: c.copied, Total: max(c.expect, c.copied)})
		if done {
			return out, nil
		}
	}
}

// pageResult is one page read ahead.
type pageResult struct {
	rows []row
	err  error
}

// prefetch reads the page of t after after in the background.
func (m *Migration) prefetch(ctx context.Context, t Table, after []any) <-chan pageResult {
	ch := make(chan pageResult, 1)
	go func() {
		rows, err := page(ctx, m.from.DB, m.onSource(t), after, m.opts.Batch)
		ch <- pageResult{rows, err}
	}()
	return ch
}

// write is rows to upsert into one table.
type write struct {
	t    Table
	rows []row
}

// withParents returns the writes that put rows into t: first the rows of other tables they
// refer to and the target lacks, read from the source, then rows themselves.
func (m *Migration) withParents(ctx context.Context, t Table, rows []row) ([]write, error) {
	var writes []write
	for _, ref := range t.Refs {
		p, _ := m.spec.table(ref.Table)
		col := t.colIdx(ref.Column)
		seen := map[string]bool{}
		var vals []any
		for _, r := range rows {
			if v := r[col]; v != nil && !seen[canon(v, 0)] {
				seen[canon(v, 0)] = true
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		have, err := existing(ctx, m.to.DB, p, vals)
		if err != nil {
			return nil, err
		}
		var missing []any
		for _, v := range vals {
			if !have[canon(v, 0)] {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			continue
		}
		prows, err := lookup(ctx, m.from.DB, m.onSource(p), missing)
		if err != nil {
			return nil, err
		}
		pw, err := m.withParents(ctx, p, prows)
		if err != nil {
			return nil, err
		}
		writes = append(writes, pw...)
	}
	return append(writes, write{t, rows}), nil
}
