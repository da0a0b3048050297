package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Events is what Sync needs of the event bus. *bus.Bus is one.
type Events interface {
	Stream
	LastOf(ctx context.Context, types []string) (uint64, error)
	Read(ctx context.Context, after uint64, opts bus.ReadOptions, fn func(ctx context.Context, batch []bus.Stored) error) error
}

// SyncOptions tune one Sync. The zero value syncs until ctx ends.
type SyncOptions struct {
	// UntilCaughtUp returns as soon as the copy has caught up with the source: its outbox
	// has nothing left to publish, every event published so far is applied, and a
	// reconcile pass has run after that.
	UntilCaughtUp bool
	// Reconcile is how often, at most, sync compares and repairs the tables no event follows
	// while it is idle. Default 30s.
	Reconcile time.Duration
	// Idle is how long without events counts as idle. Default 250ms.
	Idle time.Duration
}

// SyncResult is what a Sync did.
type SyncResult struct {
	// Events were read; Applied had the source's origin and were applied; Foreign came from
	// the other side and were skipped; Undecodable were not event envelopes.
	Events, Applied, Foreign, Undecodable int64
	// Rows were copied again because events named them; Missing were named but are not in
	// the source (nothing to copy).
	Rows, Missing int64
	// Reconciled rows were repaired by reconcile passes, in Passes passes.
	Reconciled, Passes int64
	// From and To are the stream sequences the run started after and reached.
	From, To uint64
	// CaughtUp is set when the run ended because it had caught up.
	CaughtUp bool
	Elapsed  time.Duration
}

// errCaughtUp ends Read when the copy has caught up.
var errCaughtUp = errors.New("caught up")

// Sync keeps the target in step with the source from the capability's events, until ctx ends
// or, with UntilCaughtUp, until it has caught up.
//
// It reads the events stream from where the backfill recorded it (or where the last sync
// stopped) on: each event of the source's origin names a row (its subject is the key), and
// sync copies that row again from the source as it is now, under the same upsert as
// backfill (a row never replaces one of a higher version). So applying an event twice, or an
// old one after a newer one, changes nothing: the overlap between the backfill's snapshot
// and the stream is harmless, and nothing in it is missed. Rollup tables (balances) are
// recomputed from the copied rows, never adjusted by deltas. Events from the other side are
// skipped: they describe changes the target made itself, and copying the source's older row
// over them would undo them. The stream position advances in the same transaction as the
// rows, so a sync killed at any point resumes without a gap.
//
// Tables no event follows (reservations) are brought in step by reconcile passes: compare
// with the source in batches, copy what differs or is missing. One runs when sync is idle,
// at most every Reconcile, and one before UntilCaughtUp returns.
func (m *Migration) Sync(ctx context.Context, events Events, opts SyncOptions) (SyncResult, error) {
	start := time.Now()
	var res SyncResult
	if opts.Reconcile <= 0 {
		opts.Reconcile = 30 * time.Second
	}
	if err := m.prepare(ctx); err != nil {
		return res, err
	}
	r, err := m.loadRun(ctx)
	if err != nil {
		return res, err
	}
	switch {
	case !r.found:
		return res, fmt.Errorf("%w: the %s's database holds no backfill of %s (%s): run backfill first",
			ErrNoBackfill, m.to.Name, m.spec.Capability, m.dir)
	case r.Source != m.from.Identity:
		return res, m.checkSource(r)
	case !r.backfillIsDone:
		return res, fmt.Errorf("%w: the backfill of %s (%s) has not finished: run backfill again, it resumes",
			ErrNoBackfill, m.spec.Capability, m.dir)
	}
	if err := m.claim(ctx, r); err != nil {
		return res, err
	}
	defer m.release(ctx)
	pos, err := events.Position(ctx)
	if err != nil {
		return res, fmt.Errorf("reading where the events stream stands: %w", err)
	}
	switch {
	case pos.First > r.SyncedTo+1:
		return res, fmt.Errorf("%w: sync needs the events after sequence %d, but the stream now begins at %d (older ones passed its retention, events.stream): run backfill -restart",
			ErrEventsGone, r.SyncedTo, pos.First)
	case r.SyncedTo > pos.Last:
		return res, fmt.Errorf("%w: the checkpoint is at stream sequence %d but the stream ends at %d: was the bus's store replaced? run backfill -restart",
			ErrEventsGone, r.SyncedTo, pos.Last)
	}
	res.From, res.To = r.SyncedTo, r.SyncedTo
	s := &syncer{m: m, opts: opts, res: &res, applied: r.EventsApplied, lastPass: time.Now(), renewed: time.Now()}
	m.log.Debug("sync begins", "capability", m.spec.Capability, "direction", m.dir, "after", r.SyncedTo, "source", m.source())
	err = events.Read(ctx, r.SyncedTo, bus.ReadOptions{Types: m.spec.types(), BatchSize: m.opts.Batch, Idle: opts.Idle},
		func(ctx context.Context, batch []bus.Stored) error {
			if len(batch) == 0 {
				return s.idle(ctx, events)
			}
			return s.apply(ctx, batch)
		})
	res.Elapsed = time.Since(start)
	if errors.Is(err, errCaughtUp) {
		res.CaughtUp = true
		return res, nil
	}
	if err != nil {
		return res, err
	}
	return res, ctx.Err()
}

// syncer is one Sync's state.
type syncer struct {
	m        *Migration
	opts     SyncOptions
	res      *SyncResult
	applied  int64
	lastPass time.Time
	// renewed is when the claim was last renewed.
	renewed time.Time
	// waiting is the last "not caught up yet" reason logged, so it is logged once.
	waiting string
}

// apply applies one batch of events in one transaction of the target, with the position.
func (s *syncer) apply(ctx context.Context, batch []bus.Stored) error {
	m := s.m
	keys := map[string][]any{} // table → keys named, each once
	seen := map[string]bool{}
	var newest time.Time
	var n int64
	for _, st := range batch {
		s.res.Events++
		if st.Err != nil {
			s.res.Undecodable++
			m.log.Warn("skipping a message that is not an event", "seq", st.Seq, "err", st.Err)
			continue
		}
		e := st.Event
		if e.Source != m.source() {
			s.res.Foreign++
			continue
		}
		s.res.Applied++
		n++
		newest = maxTime(newest, e.Time)
		for _, f := range m.spec.Follows {
			if f.Type != e.Type || e.Subject == "" || seen[f.Table+"\x00"+e.Subject] {
				continue
			}
			seen[f.Table+"\x00"+e.Subject] = true
			keys[f.Table] = append(keys[f.Table], e.Subject)
		}
	}
	// Read the source before the target's transaction begins: no other database's round
	// trips while a write transaction is open.
	var writes []write
	groups := map[string][]any{} // rollup table → groups whose rows changed
	for _, t := range m.spec.tables(m.dir) {
		ks := keys[t.Name]
		if len(ks) == 0 {
			continue
		}
		rows, err := lookup(ctx, m.from.DB, m.onSource(t), ks)
		if err != nil {
			return err
		}
		s.res.Rows += int64(len(rows))
		s.res.Missing += int64(len(ks) - len(rows))
		w, err := m.withParents(ctx, t, rows)
		if err != nil {
			return err
		}
		writes = append(writes, w...)
		for _, ru := range m.spec.Rollups {
			if ru.From != t.Name {
				continue
			}
			col := t.colIdx(ru.GroupBy)
			for _, r := range rows {
				groups[ru.Table] = append(groups[ru.Table], r[col])
			}
		}
	}
	last := batch[len(batch)-1].Seq
	now := m.now()
	var lastEvent any
	if !newest.IsZero() {
		lastEvent = newest.UTC()
	}
	applied := s.applied + n
	err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		for _, w := range writes {
			if err := upsert(tx, w.t, w.rows); err != nil {
				return err
			}
		}
		for _, ru := range m.spec.Rollups {
			if err := recompute(tx, ru, groups[ru.Table]); err != nil {
				return err
			}
		}
		return m.renew(tx, "synced_to = ?, events_applied = ?, synced_at = ?, last_event_at = COALESCE(?, last_event_at)",
			int64(last), applied, now, lastEvent)
	})
	if err != nil {
		return fmt.Errorf("applying events up to stream sequence %d: %w", last, err)
	}
	s.applied, s.renewed = applied, time.Now()
	s.res.To = last
	lag := time.Duration(0)
	if !newest.IsZero() {
		lag = now.Sub(newest)
	}
	m.progress(Progress{Op: "sync", Events: s.res.Events, Seq: last, Lag: lag})
	return nil
}

// recompute sets the totals of groups in ru's table from the rows they total.
func recompute(tx *gorm.DB, ru Rollup, groups []any) error {
	if len(groups) == 0 {
		return nil
	}
	where := ""
	if ru.Where != "" {
		where = "CASE WHEN " + ru.Where + " THEN " + ru.Sum + " ELSE 0 END"
	} else {
		where = ru.Sum
	}
	// One statement per chunk: the totals of the groups named, computed from the target's
	// own rows, replace whatever the table held for them.
	q := fmt.Sprintf(`INSERT INTO %s (%s, %s)
		SELECT %s, COALESCE(SUM(%s), 0) FROM %s WHERE %s IN (%%s) GROUP BY %s
		ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s`,
		ru.Table, ru.Key, ru.Column, ru.GroupBy, where, ru.From, ru.GroupBy, ru.GroupBy, ru.Key, ru.Column, ru.Column)
	for len(groups) > 0 {
		n := min(len(groups), maxParams)
		if err := tx.Exec(fmt.Sprintf(q, placeholders(n)), groups[:n]...).Error; err != nil {
			return fmt.Errorf("recomputing %s: %w", ru.Table, err)
		}
		groups = groups[n:]
	}
	return nil
}

// idle runs while no events arrive: it renews the claim, runs a reconcile pass when one is
// due, and with UntilCaughtUp ends the sync once it has caught up.
func (s *syncer) idle(ctx context.Context, events Events) error {
	m := s.m
	// Batches renew the claim as they commit; an idle sync renews it a third of the way
	// through, not on every idle call.
	if time.Since(s.renewed) >= m.opts.LeaseTTL/3 {
		if err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error { return m.renew(tx, "") }); err != nil {
			return err
		}
		s.renewed = time.Now()
	}
	if s.opts.UntilCaughtUp {
		caught, why, err := s.caughtUp(ctx, events)
		if err != nil {
			return err
		}
		if !caught {
			if why != s.waiting {
				m.log.Info("not caught up yet", "waiting_for", why)
				s.waiting = why
			}
			return nil
		}
		if err := s.reconcile(ctx); err != nil {
			return err
		}
		// The pass took time: caught up only if nothing was published meanwhile.
		if caught, _, err := s.caughtUp(ctx, events); err != nil || !caught {
			return err
		}
		return errCaughtUp
	}
	if time.Since(s.lastPass) >= s.opts.Reconcile {
		return s.reconcile(ctx)
	}
	return nil
}

// caughtUp reports whether every change the source had committed when it was called is now
// in the target, for the followed tables: first the source's outbox must have published
// everything (else events are still on their way to the stream), then every event of the
// followed types the stream holds must be applied.
func (s *syncer) caughtUp(ctx context.Context, events Events) (bool, string, error) {
	backlog, err := outboxBacklog(ctx, s.m.from.DB)
	if err != nil {
		return false, "", err
	}
	if backlog > 0 {
		return false, fmt.Sprintf("%d events in the %s's outbox, not published yet (is its relay running?)", backlog, s.m.from.Name), nil
	}
	last, err := events.LastOf(ctx, s.m.spec.types())
	if err != nil {
		return false, "", fmt.Errorf("reading the stream's last event: %w", err)
	}
	if last > s.res.To {
		return false, fmt.Sprintf("events up to stream sequence %d (applied up to %d)", last, s.res.To), nil
	}
	return true, "", nil
}

// outboxBacklog counts the events db's outbox has not published; a database without an
// outbox has none.
func outboxBacklog(ctx context.Context, db *gorm.DB) (int64, error) {
	if err := db.WithContext(ctx).Exec("SELECT 1 FROM " + outbox.Table + " WHERE 1 = 0").Error; err != nil {
		return 0, nil
	}
	n, _, err := outbox.Backlog(ctx, db)
	return n, err
}

// reconcile compares the tables no event follows with the source and copies what differs.
func (s *syncer) reconcile(ctx context.Context) error {
	m := s.m
	s.lastPass = time.Now()
	var tables []string
	for _, t := range m.spec.tables(m.dir) {
		if m.spec.followed(t.Name) {
			continue
		}
		tables = append(tables, t.Name)
		n, err := m.repair(ctx, t)
		s.res.Reconciled += n
		if err != nil {
			return fmt.Errorf("reconciling %s: %w", t.Name, err)
		}
	}
	if len(tables) > 0 {
		s.res.Passes++
		m.log.Debug("reconcile pass", "tables", strings.Join(tables, ","), "repaired", s.res.Reconciled)
	}
	return nil
}

// repair copies the rows of t the target lacks or holds otherwise than the source, in
// batches, and returns how many it copied. Rows only the target holds are left alone (and
// verify reports them): neither backfill nor sync deletes.
func (m *Migration) repair(ctx context.Context, t Table) (int64, error) {
	var repaired int64
	var after []any
	for {
		src, err := page(ctx, m.from.DB, m.onSource(t), after, m.opts.Batch)
		if err != nil {
			return repaired, err
		}
		if len(src) == 0 {
			return repaired, nil
		}
		after = t.key(src[len(src)-1])
		dst, err := m.matching(ctx, m.to, t, src)
		if err != nil {
			return repaired, err
		}
		var differ []row
		for _, r := range src {
			c := m.render(t, r)
			d, ok := dst[rowKey(t, c)]
			if !ok || checksum(d) != checksum(c) {
				differ = append(differ, r)
			}
		}
		if len(differ) > 0 {
			writes, err := m.withParents(ctx, t, differ)
			if err != nil {
				return repaired, err
			}
			err = store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
				for _, w := range writes {
					if err := upsert(tx, w.t, w.rows); err != nil {
						return err
					}
				}
				return m.renew(tx, "")
			})
			if err != nil {
				return repaired, err
			}
			repaired += int64(len(differ))
		}
		m.progress(Progress{Op: "reconcile", Table: t.Name, Done: repaired})
		if len(src) < m.opts.Batch {
			return repaired, nil
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
