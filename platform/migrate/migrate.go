// Package migrate moves a capability's data between the monolith's database and the
// database of the service extracted from it, keeps the copy in step, and proves the two
// match. It is the engine behind `ficus migrate CAPABILITY backfill|sync|verify [--reverse]`
// (docs/migrate.md).
//
//   - Backfill copies every row of the capability's tables, in batches paged by primary key,
//     upserting. Before its first batch it records the events stream's position; a
//     checkpoint in the target database records, per table, the last key copied, so an
//     interrupted backfill continues where it stopped.
//   - Sync reads the capability's events from that position on and copies again, from the
//     source, each row an event names; reconcile passes bring in step the tables no event
//     names. Its position advances in the same transaction as the rows it writes.
//   - Verify compares both sides table by table, in batches, by count and per-row checksum.
//
// A Spec describes a capability as data (tables, keys, columns, the events that follow
// them), so this package needs neither the monolith's module nor the service. Both
// directions run the same code: Reverse copies from the service back to the monolith.
package migrate

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
)

// Errors a migration returns; each is wrapped with what it concerns.
var (
	// ErrUnknownCapability is a capability no spec describes.
	ErrUnknownCapability = errors.New("unknown capability")
	// ErrSchema is a database that lacks a table or a column of the capability.
	ErrSchema = errors.New("schema missing")
	// ErrOtherSource is a checkpoint in the target left by a backfill from another database.
	ErrOtherSource = errors.New("checkpoint from another source")
	// ErrNoBackfill is a sync with no finished backfill to start from.
	ErrNoBackfill = errors.New("no finished backfill")
	// ErrEventsGone is a sync whose position the events stream no longer holds.
	ErrEventsGone = errors.New("events no longer in the stream")
	// ErrBusy is a backfill or sync while another process runs one for the same capability
	// and direction.
	ErrBusy = errors.New("another migration is running")
	// ErrLeaseLost is a migration whose claim another process took over (it had expired).
	ErrLeaseLost = errors.New("lost the claim on the migration")
)

// Direction says which way the data goes.
type Direction string

const (
	// Forward copies from the monolith to the service.
	Forward Direction = "forward"
	// Reverse copies from the service back to the monolith.
	Reverse Direction = "reverse"
)

// Side is one database of a migration.
type Side struct {
	// Name says which side it is in messages: "monolith" or "service".
	Name string
	// DB is the database, opened by store.Open.
	DB *gorm.DB
	// Identity names the database in checkpoints and messages, never with a password: a
	// backfill resumed against another source database is refused.
	Identity string
}

// Bounds of Options.
const (
	// MaxBatch is the most rows a batch may hold.
	MaxBatch = 10_000
	// DefaultBatch is the rows of a batch when Options.Batch is 0.
	DefaultBatch = 1000
)

// Options tune a Migration. The zero value is ready to use.
type Options struct {
	// Batch is the rows read and written at once (the events, for sync). Default 1,000; at
	// most MaxBatch.
	Batch int
	// Progress, if set, is called after every batch with where the operation stands. It
	// runs on the migrating goroutine and must return quickly.
	Progress func(Progress)
	// Logger receives what an operator may want to know and the output does not say.
	// Default: discarded.
	Logger *slog.Logger
	// Holder names this process in the target's claim. Default host:pid.
	Holder string
	// LeaseTTL is how long a claim holds without being renewed; a process that dies holding
	// it delays another on another host by at most this long (on the same host, a claim
	// whose process is gone is taken over at once). Default 15s.
	LeaseTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Progress is where an operation stands, as Options.Progress receives it.
type Progress struct {
	// Op is "backfill", "sync", "reconcile" or "verify".
	Op string
	// Table is the table being copied or compared; empty for sync's events.
	Table string
	// Done and Total count the table's rows (Total is the source's count when the table's
	// copy began; 0 when not known).
	Done, Total int64
	// Events and Seq are what sync has applied: how many events, up to which stream
	// sequence; Lag is how old the newest applied event was when it was applied.
	Events int64
	Seq    uint64
	Lag    time.Duration
}

// Migration moves one capability's data in one direction.
type Migration struct {
	spec     Spec
	dir      Direction
	from, to Side
	// monolith is the side that is the monolith: from or to.
	monolith Side
	opts     Options
	log      *slog.Logger
	// prec is the time precision both engines keep (PostgreSQL keeps microseconds).
	prec time.Duration
	// holder is the claim this migration holds, once claimed.
	holder string
}

// New returns the migration of spec's data in direction dir between the monolith's database
// and the service's.
func New(spec Spec, dir Direction, monolith, service Side, opts Options) (*Migration, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if opts.Batch == 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Batch < 1 || opts.Batch > MaxBatch {
		return nil, fmt.Errorf("batch %d is not between 1 and %d", opts.Batch, MaxBatch)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	m := &Migration{spec: spec, dir: dir, opts: opts, log: opts.Logger, monolith: monolith}
	switch dir {
	case Forward:
		m.from, m.to = monolith, service
	case Reverse:
		m.from, m.to = service, monolith
	default:
		return nil, fmt.Errorf("direction %q: want %s or %s", dir, Forward, Reverse)
	}
	for _, s := range []Side{monolith, service} {
		if s.DB == nil {
			return nil, fmt.Errorf("migrating %s: the %s database is not open", spec.Capability, s.Name)
		}
	}
	if store.EngineName(monolith.DB) == "postgres" || store.EngineName(service.DB) == "postgres" {
		m.prec = time.Microsecond
	}
	return m, nil
}

// From and To are the sides the data goes from and to.
func (m *Migration) From() Side { return m.from }

// To is the side the data goes to.
func (m *Migration) To() Side { return m.to }

// source is the CloudEvents source of the events that describe changes of the source side.
func (m *Migration) source() string {
	if m.dir == Reverse {
		return m.spec.ServiceSource
	}
	return m.spec.MonolithSource
}

func (m *Migration) now() time.Time { return m.opts.Now().UTC() }

func (m *Migration) progress(p Progress) {
	if m.opts.Progress != nil {
		m.opts.Progress(p)
	}
}

//go:embed migrations/*.sql
var migrations embed.FS

// on returns t as side holds it: the monolith may hold a service's table under another
// shape (Table.Monolith).
func (m *Migration) on(side Side, t Table) Table {
	if side == m.monolith {
		return t.onMonolith()
	}
	return t
}

// onSource returns t as the source holds it.
func (m *Migration) onSource(t Table) Table { return m.on(m.from, t) }

// render renders a row of t read from either side for comparison: its values as canon
// renders them, the columns that are a side's own (Table.Local) left out.
func (m *Migration) render(t Table, r row) []string {
	c := canonRow(r, m.prec)
	for _, l := range t.Local {
		c[t.colIdx(l)] = ""
	}
	return c
}

// prepare checks that both sides hold the capability's tables and columns, and creates the
// migration's own tables in the target.
func (m *Migration) prepare(ctx context.Context) error {
	for _, s := range []Side{m.from, m.to} {
		if err := m.checkSchema(ctx, s); err != nil {
			return err
		}
	}
	if err := store.Migrate(ctx, m.to.DB, "migrate", migrations, "migrations"); err != nil {
		return fmt.Errorf("creating the migration's checkpoint tables in the %s's database: %w", m.to.Name, err)
	}
	return nil
}

// checkSchema checks that s holds every table and column of the spec.
func (m *Migration) checkSchema(ctx context.Context, s Side) error {
	for _, t := range m.spec.tables(m.dir) {
		t = m.on(s, t)
		if err := s.DB.WithContext(ctx).Exec(fmt.Sprintf("SELECT 1 FROM %s WHERE 1 = 0", t.Name)).Error; err != nil {
			return fmt.Errorf("%w: the %s's database (%s) has no table %s: create its schema first (start the %s once: it applies its migrations)",
				ErrSchema, s.Name, s.Identity, t.Name, s.Name)
		}
		var missing []string
		for _, c := range t.Columns {
			if err := s.DB.WithContext(ctx).Exec(fmt.Sprintf("SELECT %s FROM %s WHERE 1 = 0", c, t.Name)).Error; err != nil {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%w: table %s in the %s's database (%s) lacks column(s) %s: is its schema older than this ficus?",
				ErrSchema, t.Name, s.Name, s.Identity, strings.Join(missing, ", "))
		}
	}
	return nil
}

// run is the target's record of a capability's migration in one direction.
type run struct {
	Source         string
	SyncFrom       uint64
	SyncedTo       uint64
	EventsApplied  int64
	BackfillStart  time.Time
	BackfillDone   *time.Time
	SyncedAt       *time.Time
	LastEventAt    *time.Time
	Holder         string
	LeaseUntil     time.Time
	found          bool
	backfillIsDone bool
}

// loadRun reads the target's record of this migration; found is false when there is none.
func (m *Migration) loadRun(ctx context.Context) (run, error) {
	rows, err := m.to.DB.WithContext(ctx).Raw(`SELECT source, sync_from, synced_to, events_applied, backfill_started_at,
		backfill_done_at, synced_at, last_event_at, holder, lease_until
		FROM ficus_migrate_runs WHERE capability = ? AND direction = ?`, m.spec.Capability, string(m.dir)).Rows()
	if err != nil {
		return run{}, fmt.Errorf("reading the checkpoint: %w", err)
	}
	defer rows.Close()
	var r run
	if rows.Next() {
		var from, to int64
		if err := rows.Scan(&r.Source, &from, &to, &r.EventsApplied, &r.BackfillStart, &r.BackfillDone, &r.SyncedAt,
			&r.LastEventAt, &r.Holder, &r.LeaseUntil); err != nil {
			return run{}, fmt.Errorf("reading the checkpoint: %w", err)
		}
		r.SyncFrom, r.SyncedTo, r.found, r.backfillIsDone = uint64(from), uint64(to), true, r.BackfillDone != nil
	}
	if err := rows.Err(); err != nil {
		return run{}, fmt.Errorf("reading the checkpoint: %w", err)
	}
	return r, nil
}

// checkSource refuses a checkpoint another source database left.
func (m *Migration) checkSource(r run) error {
	if r.found && r.Source != m.from.Identity {
		return fmt.Errorf("%w: the %s's database holds a checkpoint of %s (%s) copied from %s, but this run reads %s; point at the database it came from, or start over with backfill -restart",
			ErrOtherSource, m.to.Name, m.spec.Capability, m.dir, r.Source, m.from.Identity)
	}
	return nil
}

// claim makes this process the one that runs the migration, as the target records it. A
// claim another live process holds is refused with ErrBusy; an expired one, or one whose
// process is gone from this host, is taken over.
func (m *Migration) claim(ctx context.Context, r run) error {
	now := m.now()
	if r.Holder != "" && r.Holder != m.opts.Holder && now.Before(r.LeaseUntil) && !holderGone(r.Holder) {
		return fmt.Errorf("%w: %s holds %s (%s) until %s; if it is gone, wait until then",
			ErrBusy, r.Holder, m.spec.Capability, m.dir, r.LeaseUntil.Format(time.RFC3339))
	}
	var taken bool
	err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		res := tx.Exec(`UPDATE ficus_migrate_runs SET holder = ?, lease_until = ?
			WHERE capability = ? AND direction = ? AND holder = ?`,
			m.opts.Holder, now.Add(m.opts.LeaseTTL), m.spec.Capability, string(m.dir), r.Holder)
		taken = res.RowsAffected == 1
		return res.Error
	})
	if err != nil {
		return fmt.Errorf("claiming the migration: %w", err)
	}
	if !taken {
		return fmt.Errorf("%w: another process claimed %s (%s) at the same moment", ErrBusy, m.spec.Capability, m.dir)
	}
	if r.Holder != "" && r.Holder != m.opts.Holder {
		m.log.Info("took over an abandoned migration", "previous", r.Holder)
	}
	m.holder = m.opts.Holder
	return nil
}

// renew extends the claim inside tx, and fails with ErrLeaseLost if this process no longer
// holds it: every write of a migration goes through here, so two processes never write one.
func (m *Migration) renew(tx *gorm.DB, set string, args ...any) error {
	q := "UPDATE ficus_migrate_runs SET lease_until = ?"
	all := []any{m.now().Add(m.opts.LeaseTTL)}
	if set != "" {
		q += ", " + set
		all = append(all, args...)
	}
	q += " WHERE capability = ? AND direction = ? AND holder = ?"
	all = append(all, m.spec.Capability, string(m.dir), m.holder)
	res := tx.Exec(q, all...)
	if res.Error != nil {
		return fmt.Errorf("updating the checkpoint: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("%w: %s (%s) was taken over by another process after this one's claim expired", ErrLeaseLost, m.spec.Capability, m.dir)
	}
	return nil
}

// release gives up the claim, so that the next run need not wait for it to expire.
func (m *Migration) release(ctx context.Context) {
	if m.holder == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Exec(`UPDATE ficus_migrate_runs SET holder = '', lease_until = ?
			WHERE capability = ? AND direction = ? AND holder = ?`,
			time.Unix(0, 0).UTC(), m.spec.Capability, string(m.dir), m.holder).Error
	})
	if err != nil {
		m.log.Warn("could not release the migration's claim; the next run waits for it to expire", "err", err)
	}
	m.holder = ""
}

// holderGone reports whether holder ("host:pid") names a process of this host that no longer
// exists. A claim on another host is never judged gone: only its expiry frees it.
func holderGone(holder string) bool {
	host, pidText, ok := strings.Cut(holder, ":")
	me, _ := os.Hostname()
	if !ok || host != me {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}
