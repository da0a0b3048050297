// Package retention deletes the rows Ficus records for itself (published outbox rows, inbox
// ids, idempotency keys) once they are old enough, so that no table grows without limit.
//
// Each package that owns such a table says how to prune it with a Rule (outbox.PruneRule,
// inbox.PruneRule, idempotency.PruneRule); one Pruner per database runs its rules in rounds.
// A round deletes in batches, each batch its own short write transaction, so that pruning a
// large backlog never holds the database's write turn for long, and it deletes at most
// MaxBatches batches per table before giving way to the application for a while.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/metrics"
	"github.com/ficus-project/ficus/platform/store"
)

// Rule prunes one table.
type Rule struct {
	// Table names what the rule prunes in logs and in the metrics' "table" label.
	Table string
	// Keep is how long rows are kept; rows older than now minus Keep may be deleted.
	Keep time.Duration
	// Prune deletes at most limit rows older than cutoff, in tx, and returns how many it
	// deleted. Deleting fewer than limit says there is nothing more to delete now.
	Prune func(tx *gorm.DB, cutoff time.Time, limit int) (int64, error)
}

// Options tune a Pruner. The zero value is ready to use.
type Options struct {
	// Name names the database in logs and in the metrics' "database" label. Default "db".
	Name string
	// Interval is the pause between rounds. Default 1m.
	Interval time.Duration
	// CatchUp is the pause before the next round when a table had more to prune than one
	// round may delete. Default 1s.
	CatchUp time.Duration
	// BatchSize is the most rows one delete removes, in one write transaction. Default 1000.
	BatchSize int
	// MaxBatches is the most batches per table in one round. Default 10.
	MaxBatches int
	// Registerer receives the pruner's metrics. Default: none registered.
	Registerer prometheus.Registerer
	// Logger receives failures. Default: discarded.
	Logger *slog.Logger
	// Now is the clock rows' ages are measured with. Default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "db"
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.CatchUp <= 0 {
		o.CatchUp = time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.MaxBatches <= 0 {
		o.MaxBatches = 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Pruner prunes one database by its rules. Run it once per database, in every process that
// writes it if you like: deletes of the same old rows from two processes are harmless.
type Pruner struct {
	db      *gorm.DB
	rules   []Rule
	opts    Options
	log     *slog.Logger
	metrics *pruneMetrics
	// err is a construction failure, reported by Run and Round.
	err error
}

// NewPruner returns a pruner of db by rules. Run starts it.
func NewPruner(db *gorm.DB, opts Options, rules ...Rule) *Pruner {
	opts.setDefaults()
	p := &Pruner{db: db, rules: rules, opts: opts, log: opts.Logger.With("database", opts.Name)}
	p.metrics, p.err = newPruneMetrics(opts.Registerer, opts.Name)
	for _, r := range rules {
		if r.Table == "" || r.Keep <= 0 || r.Prune == nil {
			p.err = errors.Join(p.err, fmt.Errorf("retention rule %q: needs a table, a positive Keep (got %s) and a Prune function", r.Table, r.Keep))
			continue
		}
		// Every table's series exist from the start, at zero, so a dashboard sees the
		// pruner before its first deletion.
		p.metrics.pruned.WithLabelValues(r.Table)
		p.metrics.errors.WithLabelValues(r.Table)
	}
	return p
}

// Run prunes every Interval until ctx is done, then returns nil. A round that fails is logged
// and counted, and tried again at the next one; Run returns an error only if it cannot start.
func (p *Pruner) Run(ctx context.Context) error {
	if p.err != nil {
		return fmt.Errorf("pruning %s: %w", p.opts.Name, p.err)
	}
	for {
		res, err := p.Round(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("pruning failed; trying again at the next round", "err", err)
		}
		wait := p.opts.Interval
		if res.More {
			wait = p.opts.CatchUp
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Result is what one round deleted.
type Result struct {
	// Pruned is the number of rows deleted, by table.
	Pruned map[string]int64
	// More reports that a table had more rows to delete than one round may.
	More bool
}

// Round prunes once, now: each rule deletes batches until it has nothing older than its
// cutoff left or has deleted MaxBatches of them. A failing rule does not stop the others; the
// error joins every rule's failure. Run calls it every Interval; call it directly to prune on
// demand.
func (p *Pruner) Round(ctx context.Context) (Result, error) {
	res := Result{Pruned: make(map[string]int64, len(p.rules))}
	if p.err != nil {
		return res, fmt.Errorf("pruning %s: %w", p.opts.Name, p.err)
	}
	var errs []error
	for _, r := range p.rules {
		n, more, err := p.prune(ctx, r)
		res.Pruned[r.Table] += n
		res.More = res.More || more
		if err != nil {
			p.metrics.errors.WithLabelValues(r.Table).Inc()
			errs = append(errs, fmt.Errorf("pruning %s: %w", r.Table, err))
		}
	}
	return res, errors.Join(errs...)
}

// prune runs one rule's batches.
func (p *Pruner) prune(ctx context.Context, r Rule) (total int64, more bool, err error) {
	// One cutoff for the round: rows that age past it while the round runs wait for the next.
	cutoff := p.opts.Now().UTC().Add(-r.Keep)
	for range p.opts.MaxBatches {
		var n int64
		err := store.Write(ctx, p.db, func(_ context.Context, tx *gorm.DB) error {
			var err error
			n, err = r.Prune(tx, cutoff, p.opts.BatchSize)
			return err
		})
		if err != nil {
			return total, false, err
		}
		total += n
		p.metrics.pruned.WithLabelValues(r.Table).Add(float64(n))
		if n < int64(p.opts.BatchSize) {
			return total, false, nil
		}
	}
	return total, true, nil
}

// pruneMetrics are a pruner's collectors.
type pruneMetrics struct {
	pruned *prometheus.CounterVec
	errors *prometheus.CounterVec
}

func newPruneMetrics(reg prometheus.Registerer, name string) (*pruneMetrics, error) {
	labels := prometheus.Labels{"database": name}
	m := &pruneMetrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_retention_pruned_rows_total", Help: "Rows deleted because they were older than their table's retention.", ConstLabels: labels,
		}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_retention_errors_total", Help: "Pruning rounds of a table that failed and will be tried again.", ConstLabels: labels,
		}, []string{"table"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.pruned = metrics.Register(reg, m.pruned, &err)
	m.errors = metrics.Register(reg, m.errors, &err)
	if err != nil {
		return m, fmt.Errorf("registering retention metrics: %w", err)
	}
	return m, nil
}
