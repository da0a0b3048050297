package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/migrate"
	"github.com/ficus-project/ficus/platform/store"
)

// migrateCommand moves a capability's data between the monolith's database and its service's.
func migrateCommand() *command {
	var caps []*command
	for _, s := range migrate.Specs() {
		caps = append(caps, migrateCapabilityCommand(s))
	}
	return &command{
		name:    "migrate",
		args:    "CAPABILITY",
		summary: "move a capability's data to its service and back: migrate CAPABILITY backfill | sync | verify",
		about: `Moves a capability's data from the monolith's database to the database of the service
extracted from it, keeps the copy in step, and proves the two match; with -reverse, the same
the other way, to return a capability to the monolith without losing the writes the service
took. docs/migrate.md describes each step and how they fit together.

  backfill  copies every row, in batches, resumably (a checkpoint in the target database)
  sync      keeps the copy in step from the capability's events on the bus
  verify    compares both sides, row by row; exit 1 on any difference`,
		examples: []string{
			"ficus migrate inventory backfill",
			"ficus migrate inventory sync -until-caught-up",
			"ficus migrate inventory verify",
			"ficus migrate inventory backfill -reverse",
		},
		subs: caps,
	}
}

// migrateFlags are the flags every migrate command takes.
type migrateFlags struct {
	path              string
	monolith, service string
	reverse           bool
	batch             int
	timeout           time.Duration
}

func (f *migrateFlags) declare(fs *flag.FlagSet, capability string) {
	configFlag(fs, &f.path)
	fs.StringVar(&f.monolith, "monolith", "", "the monolith's database `DSN` (default: monolith.database from the config)")
	fs.StringVar(&f.service, "service", "", fmt.Sprintf("the service's database `DSN` (default: services.%s.database from the config)", capability))
	fs.BoolVar(&f.reverse, "reverse", false, "the other way: from the service back to the monolith")
	fs.IntVar(&f.batch, "batch", migrate.DefaultBatch, fmt.Sprintf("rows (for sync: events) per batch, 1–%d", migrate.MaxBatch))
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the bus")
}

// migrateCapabilityCommand is `ficus migrate CAPABILITY`, with its three steps.
func migrateCapabilityCommand(spec migrate.Spec) *command {
	var tables []string
	for _, t := range spec.Tables {
		tables = append(tables, t.Name)
	}
	name := spec.Capability
	return &command{
		name:    name,
		args:    "COMMAND",
		summary: fmt.Sprintf("the %s capability's tables: %s", name, strings.Join(tables, ", ")),
		about: fmt.Sprintf(`Moves the %s capability's tables (%s) between the monolith's database and the %s
service's, keeps them in step from its events, and verifies them.`, name, strings.Join(tables, ", "), name),
		examples: []string{
			"ficus migrate " + name + " backfill",
			"ficus migrate " + name + " sync",
			"ficus migrate " + name + " verify",
		},
		subs: []*command{migrateBackfillCommand(spec), migrateSyncCommand(spec), migrateVerifyCommand(spec)},
	}
}

// open loads the config, opens both databases and returns the migration, and a function that
// closes what was opened.
func (f *migrateFlags) open(ctx context.Context, e env, spec migrate.Spec, progress func(migrate.Progress)) (*migrate.Migration, *config.Config, func(), error) {
	path := "ficus migrate " + spec.Capability
	if f.batch < 1 || f.batch > migrate.MaxBatch {
		return nil, nil, nil, usageError{path, fmt.Sprintf("-batch %d is not between 1 and %d", f.batch, migrate.MaxBatch)}
	}
	cfg, err := config.Load(f.path)
	if err != nil {
		return nil, nil, nil, err
	}
	monoDSN, monoID, err := dsnOf(f.monolith, cfg.Monolith.Database, cfg, "monolith.database")
	if err != nil {
		return nil, nil, nil, err
	}
	svcCfg, ok := cfg.Services[spec.Capability]
	if f.service == "" && !ok {
		return nil, nil, nil, fmt.Errorf("%s has no services.%s: give the service's database with -service DSN", f.path, spec.Capability)
	}
	svcDSN, svcID, err := dsnOf(f.service, svcCfg.Database, cfg, "services."+spec.Capability+".database")
	if err != nil {
		return nil, nil, nil, err
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	openSide := func(name, dsn, id string) (migrate.Side, error) {
		if p, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
			if _, err := os.Stat(p); err != nil {
				return migrate.Side{}, fmt.Errorf("the %s's database %s: %w (start the %s once to create it, or give its DSN with -%s)", name, id, err, name, name)
			}
		}
		db, err := store.Open(ctx, dsn, store.Options{})
		if err != nil {
			return migrate.Side{}, fmt.Errorf("opening the %s's database: %w", name, err)
		}
		closers = append(closers, func() { _ = store.Close(db) })
		return migrate.Side{Name: name, DB: db, Identity: id}, nil
	}
	mono, err := openSide("monolith", monoDSN, monoID)
	if err != nil {
		return nil, nil, nil, err
	}
	svc, err := openSide("service", svcDSN, svcID)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	dir := migrate.Forward
	if f.reverse {
		dir = migrate.Reverse
	}
	m, err := migrate.New(spec, dir, mono, svc, migrate.Options{
		Batch: f.batch, Progress: progress,
		Logger: newLogger(e.stderr, e.getenv).With("component", "migrate"),
	})
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return m, cfg, closeAll, nil
}

// dsnOf returns the DSN to open, from the flag or else from the config, and the identity that
// names the database in checkpoints: a SQLite file by its absolute path, a PostgreSQL
// database by its URL without password or options.
func dsnOf(flagValue, configValue string, cfg *config.Config, field string) (dsn, id string, err error) {
	dsn = flagValue
	resolve := func(p string) (string, error) { return filepath.Abs(p) }
	if dsn == "" {
		dsn = configValue
		resolve = func(p string) (string, error) { return filepath.Abs(cfg.Resolve(p)) }
	}
	if dsn == "" {
		return "", "", fmt.Errorf("no database for %s", field)
	}
	if p, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		abs, err := resolve(p)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", field, err)
		}
		return "sqlite:" + abs, "sqlite:" + abs, nil
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", fmt.Errorf("%s: %q is neither sqlite:PATH nor postgres://…", field, config.Redact(dsn))
	}
	id = "postgres://" + u.User.Username() + "@" + u.Host + u.Path
	return dsn, id, nil
}

// openWithBus is open, and a connection to the config's bus within the flags' timeout; the
// function it returns closes all three.
func (f *migrateFlags) openWithBus(ctx context.Context, e env, spec migrate.Spec, progress func(migrate.Progress)) (*migrate.Migration, *bus.Bus, func(), error) {
	m, cfg, closeDBs, err := f.open(ctx, e, spec, progress)
	if err != nil {
		return nil, nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	b, err := bus.Connect(cctx, cfg.Events, bus.Options{Name: "ficus-migrate"})
	if err != nil {
		closeDBs()
		return nil, nil, nil, fmt.Errorf("%w (is the bus running? try ficus up or ficus serve bus)", err)
	}
	return m, b, func() { b.Close(); closeDBs() }, nil
}

// direction describes m's direction for the person reading the output.
func direction(m *migrate.Migration) string {
	return fmt.Sprintf("%s (%s) → %s (%s)", m.From().Name, m.From().Identity, m.To().Name, m.To().Identity)
}

func migrateBackfillCommand(spec migrate.Spec) *command {
	var f migrateFlags
	var restart bool
	return &command{
		name:    "backfill",
		summary: "copy every row to the other side, in batches; resumable",
		about: fmt.Sprintf(`Copies every row of the %s capability's tables from the monolith's database to the
service's (with -reverse, back), in batches paged by primary key, upserting. Before the first
batch it records the events stream's position, where sync will start. Each batch commits
with a checkpoint in the target database, so a backfill interrupted at any point continues
where it stopped when run again; -restart discards the checkpoint and copies everything anew.
It shows a progress bar on a terminal, progress lines otherwise, and a summary at the end.
The target's schema must exist: start the service (or, with -reverse, the monolith) once.`, spec.Capability),
		examples: []string{
			"ficus migrate " + spec.Capability + " backfill",
			"ficus migrate " + spec.Capability + " backfill -batch 5000",
			"ficus migrate " + spec.Capability + " backfill -reverse",
			"ficus migrate " + spec.Capability + " backfill -service postgres://ficus@127.0.0.1:5432/" + spec.Capability,
		},
		flags: func(fs *flag.FlagSet) {
			f.declare(fs, spec.Capability)
			fs.BoolVar(&restart, "restart", false, "discard the checkpoint and copy everything again")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			pr := newProgress(e.stdout)
			m, b, closeAll, err := f.openWithBus(ctx, e, spec, pr.update)
			if err != nil {
				return err
			}
			defer closeAll()
			fmt.Fprintf(e.stdout, "backfill %s: %s, batches of %d\n", spec.Capability, direction(m), f.batch)
			res, err := m.Backfill(ctx, b, migrate.BackfillOptions{Restart: restart})
			pr.finish()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("backfill interrupted after %d rows; run it again to continue where it stopped", res.Rows)
				}
				return err
			}
			writeBackfill(e.stdout, spec.Capability, res)
			return nil
		},
	}
}

// writeBackfill prints a backfill's summary.
func writeBackfill(w io.Writer, capability string, res migrate.BackfillResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range res.Tables {
		note := ""
		if t.Already {
			note = "  (by an earlier run)"
		}
		fmt.Fprintf(tw, "  %s\t%s rows copied%s\n", t.Table, grouped(t.Total), note)
	}
	_ = tw.Flush()
	switch {
	case res.AlreadyDone:
		fmt.Fprintf(w, "backfill of %s was already complete; sync starts after stream sequence %d (-restart copies everything again)\n", capability, res.SyncFrom)
	default:
		how := "done"
		if res.Resumed {
			how = "done (resumed)"
		}
		fmt.Fprintf(w, "backfill %s: %s rows in %s (%s rows/s); sync starts after stream sequence %d\n",
			how, grouped(res.Rows), res.Elapsed.Round(time.Millisecond), grouped(int64(res.RowsPerSecond())), res.SyncFrom)
	}
}

func migrateSyncCommand(spec migrate.Spec) *command {
	var f migrateFlags
	var opts migrate.SyncOptions
	var deadline time.Duration
	return &command{
		name:    "sync",
		summary: "keep the copy in step from the capability's events, until interrupted",
		about: fmt.Sprintf(`Keeps the copy of the %s capability in step: it reads the capability's events from the
position the backfill recorded (or where the last sync stopped) and copies again each row an
event names; the events of the other side are skipped. Tables no event follows are compared
and repaired every -reconcile while idle. It runs until interrupted (Ctrl-C), or with
-until-caught-up until every change the source had committed is in the copy. Its position
is kept in the target database, so a sync stopped or killed resumes where it stopped.`, spec.Capability),
		examples: []string{
			"ficus migrate " + spec.Capability + " sync",
			"ficus migrate " + spec.Capability + " sync -until-caught-up -deadline 5m",
			"ficus migrate " + spec.Capability + " sync -reverse",
		},
		flags: func(fs *flag.FlagSet) {
			f.declare(fs, spec.Capability)
			fs.BoolVar(&opts.UntilCaughtUp, "until-caught-up", false, "stop once the copy has caught up (for scripts)")
			fs.DurationVar(&deadline, "deadline", 0, "with -until-caught-up: fail when not caught up within this (0: wait as long as it takes)")
			fs.DurationVar(&opts.Reconcile, "reconcile", 30*time.Second, "how often, at most, to repair the tables no event follows while idle")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if deadline < 0 || opts.Reconcile <= 0 {
				return usageError{"ficus migrate " + spec.Capability + " sync", "-deadline must not be negative and -reconcile must be positive"}
			}
			pr := newSyncProgress(e.stdout)
			m, b, closeAll, err := f.openWithBus(ctx, e, spec, pr.update)
			if err != nil {
				return err
			}
			defer closeAll()
			fmt.Fprintf(e.stdout, "sync %s: %s\n", spec.Capability, direction(m))
			runCtx := ctx
			if opts.UntilCaughtUp && deadline > 0 {
				var cancel context.CancelFunc
				runCtx, cancel = context.WithTimeout(ctx, deadline)
				defer cancel()
			}
			res, err := m.Sync(runCtx, b, opts)
			fmt.Fprintf(e.stdout, "sync %s: %s events read, %s applied, %s from the other side skipped; %s rows copied, %s rows reconciled; stream sequence %d → %d\n",
				spec.Capability, grouped(res.Events), grouped(res.Applied), grouped(res.Foreign), grouped(res.Rows), grouped(res.Reconciled), res.From, res.To)
			switch {
			case res.CaughtUp:
				fmt.Fprintf(e.stdout, "sync %s: caught up after %s\n", spec.Capability, res.Elapsed.Round(time.Millisecond))
				return nil
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
				return fmt.Errorf("sync %s: not caught up within -deadline %s", spec.Capability, deadline)
			case ctx.Err() != nil:
				fmt.Fprintf(e.stdout, "sync %s: stopped; it resumes from stream sequence %d\n", spec.Capability, res.To)
				return nil
			}
			return err
		},
	}
}

func migrateVerifyCommand(spec migrate.Spec) *command {
	var f migrateFlags
	var opts migrate.VerifyOptions
	return &command{
		name:    "verify",
		summary: "compare both sides row by row; exit 1 on any difference",
		about: fmt.Sprintf(`Compares the %s capability's tables on both sides, in batches, by row count and per-row
checksum, and prints each differing row's key with both sides' values: changed, missing on
the target, or only on the target. It exits 0 when the sides match and 1 on any difference.
It changes no data (it records its result in the target for the dashboard). While the source
takes writes, a difference may only be sync's lag: verify after sync -until-caught-up.`, spec.Capability),
		examples: []string{
			"ficus migrate " + spec.Capability + " verify",
			"ficus migrate " + spec.Capability + " verify -reverse -max-diffs 100",
		},
		flags: func(fs *flag.FlagSet) {
			f.declare(fs, spec.Capability)
			fs.IntVar(&opts.MaxDiffs, "max-diffs", 20, "differing rows to print per table, 1–10000 (all are counted)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if opts.MaxDiffs < 1 || opts.MaxDiffs > 10_000 {
				return usageError{"ficus migrate " + spec.Capability + " verify", fmt.Sprintf("-max-diffs %d is not between 1 and 10000", opts.MaxDiffs)}
			}
			pr := newProgress(e.stdout)
			m, _, closeDBs, err := f.open(ctx, e, spec, pr.update)
			if err != nil {
				return err
			}
			defer closeDBs()
			fmt.Fprintf(e.stdout, "verify %s: %s\n", spec.Capability, direction(m))
			rep, err := m.Verify(ctx, opts)
			pr.finish()
			if err != nil {
				return err
			}
			writeReport(e.stdout, rep)
			if !rep.Clean() {
				return exitError{1}
			}
			return nil
		},
	}
}

// writeReport prints what verify found: a table of counts, each kept difference with both
// sides' values, and a verdict.
func writeReport(w io.Writer, rep migrate.Report) {
	from, to := strings.ToUpper(rep.From.Name), strings.ToUpper(rep.To.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  TABLE\t%s\t%s\tCHANGED\tMISSING\tEXTRA\n", from, to)
	for _, t := range rep.Tables {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", t.Table, t.SourceRows, t.TargetRows, t.Changed, t.Missing, t.Extra)
	}
	_ = tw.Flush()
	for _, t := range rep.Tables {
		for _, d := range t.Diffs {
			key := strings.Join(d.Key, ", ")
			switch d.Kind {
			case migrate.Changed:
				var cols []string
				for _, i := range d.ChangedColumns() {
					cols = append(cols, fmt.Sprintf("%s %s: %s, %s: %s", t.Columns[i], rep.From.Name, d.Source[i], rep.To.Name, d.Target[i]))
				}
				fmt.Fprintf(w, "  %s %s: changed: %s\n", t.Table, key, strings.Join(cols, "; "))
			case migrate.Missing:
				fmt.Fprintf(w, "  %s %s: missing on the %s; the %s has %s\n", t.Table, key, rep.To.Name, rep.From.Name, rowText(t.Columns, d.Source))
			case migrate.Extra:
				fmt.Fprintf(w, "  %s %s: only on the %s, which has %s\n", t.Table, key, rep.To.Name, rowText(t.Columns, d.Target))
			}
		}
		if n := t.Differences(); n > int64(len(t.Diffs)) {
			fmt.Fprintf(w, "  %s: %d more differing rows not shown (-max-diffs)\n", t.Table, n-int64(len(t.Diffs)))
		}
	}
	fmt.Fprintf(w, "verify %s: %s (%s)\n", rep.Capability, rep.Summary(), rep.Elapsed.Round(time.Millisecond))
}

// rowText renders a row as {col: value, …}.
func rowText(cols, vals []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c + ": " + vals[i]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// grouped writes n with thousands separators: 100,000.
func grouped(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
