package migrate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/store"
)

// DiffKind says how a row differs.
type DiffKind string

// Kinds of difference.
const (
	// Missing is a row of the source the target lacks.
	Missing DiffKind = "missing"
	// Extra is a row only the target holds.
	Extra DiffKind = "extra"
	// Changed is a row both hold with different values.
	Changed DiffKind = "changed"
)

// Difference is one row that differs between the sides.
type Difference struct {
	Kind DiffKind
	// Key is the row's key, rendered.
	Key []string
	// Source and Target are the row's values on either side, rendered, in the order of the
	// table's columns; nil on the side that lacks the row.
	Source, Target []string
}

// ChangedColumns returns the positions of the columns whose values differ.
func (d Difference) ChangedColumns() []int {
	var out []int
	for i := range d.Source {
		if i < len(d.Target) && d.Source[i] != d.Target[i] {
			out = append(out, i)
		}
	}
	return out
}

// TableReport is what verify found in one table.
type TableReport struct {
	Table   string
	Columns []string
	// SourceRows and TargetRows are the rows each side holds.
	SourceRows, TargetRows int64
	// Missing, Extra and Changed count the differences by kind.
	Missing, Extra, Changed int64
	// Diffs are the first differences found, at most VerifyOptions.MaxDiffs.
	Diffs []Difference
	// SourceSum and TargetSum combine every row's checksum, in any order: equal tables have
	// equal sums.
	SourceSum, TargetSum uint64
}

// Differences counts the table's differing rows.
func (t TableReport) Differences() int64 { return t.Missing + t.Extra + t.Changed }

// Report is what Verify found.
type Report struct {
	Capability string
	Direction  Direction
	// From and To are the sides compared, the source first.
	From, To Side
	Tables   []TableReport
	Elapsed  time.Duration
}

// Differences counts the differing rows of every table.
func (r Report) Differences() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Differences()
	}
	return n
}

// Rows counts the source rows compared.
func (r Report) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.SourceRows
	}
	return n
}

// Clean reports whether the sides hold the same rows.
func (r Report) Clean() bool { return r.Differences() == 0 }

// Summary says in one line what verify found.
func (r Report) Summary() string {
	if r.Clean() {
		return fmt.Sprintf("clean: %d rows in %d tables match", r.Rows(), len(r.Tables))
	}
	var parts []string
	for _, t := range r.Tables {
		if t.Differences() > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d changed, %d missing, %d extra", t.Table, t.Changed, t.Missing, t.Extra))
		}
	}
	return fmt.Sprintf("%d rows differ (%s)", r.Differences(), strings.Join(parts, "; "))
}

// VerifyOptions tune one Verify. The zero value is ready to use.
type VerifyOptions struct {
	// MaxDiffs is how many differences per table the report keeps with their values (all
	// are counted). Default 20; at most 10,000.
	MaxDiffs int
}

// Verify compares the capability's tables on both sides, in batches: each batch of the
// source's rows, in key order, is looked up by key on the target and compared row by row by
// checksum of its values (rendered alike whatever the engine: times in UTC, cut to the
// precision both engines keep). When the target holds more rows than matched, a second pass
// over the target finds the ones the source lacks. Verify changes neither side's data; it
// records its result in the target's checkpoint tables, for the dashboard.
//
// Verify compares what each side holds at the moment each batch is read: while the source
// takes writes, a row may differ only because sync has not applied its event yet. Verify
// after sync -until-caught-up, with the source quiet, for an exact answer.
func (m *Migration) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	start := time.Now()
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 20
	}
	opts.MaxDiffs = min(opts.MaxDiffs, 10_000)
	rep := Report{Capability: m.spec.Capability, Direction: m.dir, From: m.from, To: m.to}
	if err := m.prepare(ctx); err != nil {
		return rep, err
	}
	for _, t := range m.spec.tables(m.dir) {
		tr, err := m.verifyTable(ctx, t, opts)
		rep.Tables = append(rep.Tables, tr)
		if err != nil {
			return rep, fmt.Errorf("verifying %s: %w", t.Name, err)
		}
	}
	rep.Elapsed = time.Since(start)
	m.record(ctx, rep)
	return rep, nil
}

func (m *Migration) verifyTable(ctx context.Context, t Table, opts VerifyOptions) (TableReport, error) {
	tr := TableReport{Table: t.Name, Columns: t.Columns}
	total, err := count(ctx, m.from.DB, m.onSource(t))
	if err != nil {
		return tr, err
	}
	note := func(d Difference) {
		switch d.Kind {
		case Missing:
			tr.Missing++
		case Extra:
			tr.Extra++
		case Changed:
			tr.Changed++
		}
		if len(tr.Diffs) < opts.MaxDiffs {
			tr.Diffs = append(tr.Diffs, d)
		}
	}
	var matched int64
	var after []any
	for {
		src, err := page(ctx, m.from.DB, m.onSource(t), after, m.opts.Batch)
		if err != nil {
			return tr, err
		}
		if len(src) > 0 {
			after = t.key(src[len(src)-1])
			dst, err := m.matching(ctx, m.to, t, src)
			if err != nil {
				return tr, err
			}
			for _, r := range src {
				c := m.render(t, r)
				sum := checksum(c)
				tr.SourceRows++
				tr.SourceSum += sum
				k := rowKey(t, c)
				d, ok := dst[k]
				if !ok {
					note(Difference{Kind: Missing, Key: keyVals(t, c), Source: c})
					continue
				}
				matched++
				dsum := checksum(d)
				tr.TargetSum += dsum
				if dsum != sum {
					note(Difference{Kind: Changed, Key: keyVals(t, c), Source: c, Target: d})
				}
			}
		}
		m.progress(Progress{Op: "verify", Table: t.Name, Done: tr.SourceRows, Total: max(total, tr.SourceRows)})
		if len(src) < m.opts.Batch {
			break
		}
	}
	if tr.TargetRows, err = count(ctx, m.to.DB, t); err != nil {
		return tr, err
	}
	if tr.TargetRows <= matched {
		return tr, nil
	}
	// The target holds rows the source lacks: find them.
	after = nil
	for {
		dst, err := page(ctx, m.to.DB, t, after, m.opts.Batch)
		if err != nil {
			return tr, err
		}
		if len(dst) == 0 {
			return tr, nil
		}
		after = t.key(dst[len(dst)-1])
		src, err := m.matching(ctx, m.from, t, dst)
		if err != nil {
			return tr, err
		}
		for _, r := range dst {
			c := m.render(t, r)
			if _, ok := src[rowKey(t, c)]; !ok {
				tr.TargetSum += checksum(c)
				note(Difference{Kind: Extra, Key: keyVals(t, c), Target: c})
			}
		}
		if len(dst) < m.opts.Batch {
			return tr, nil
		}
	}
}

// matching returns side's rows of t with the keys of rows (and possibly more), rendered, by
// rowKey.
func (m *Migration) matching(ctx context.Context, side Side, t Table, rows []row) (map[string][]string, error) {
	first := t.keyIdx()[0]
	seen := map[string]bool{}
	var vals []any
	for _, r := range rows {
		if k := canon(r[first], 0); !seen[k] {
			seen[k] = true
			vals = append(vals, r[first])
		}
	}
	got, err := lookup(ctx, side.DB, m.on(side, t), vals)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(got))
	for _, r := range got {
		c := m.render(t, r)
		out[rowKey(t, c)] = c
	}
	return out, nil
}

// rowKey is the key of a rendered row, as one string.
func rowKey(t Table, c []string) string { return keyString(keyVals(t, c)) }

// keyVals returns the key's values of a rendered row.
func keyVals(t Table, c []string) []string {
	idx := t.keyIdx()
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = c[j]
	}
	return out
}

// record keeps the report's outcome in the target for the dashboard; failing to is logged,
// not fatal: the report itself has been made.
func (m *Migration) record(ctx context.Context, rep Report) {
	err := store.Write(ctx, m.to.DB, func(ctx context.Context, tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO ficus_migrate_verifications (capability, direction, verified_at, rows_compared, differences, summary)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (capability, direction) DO UPDATE SET verified_at = excluded.verified_at,
			rows_compared = excluded.rows_compared, differences = excluded.differences, summary = excluded.summary`,
			m.spec.Capability, string(m.dir), m.now(), rep.Rows(), rep.Differences(), rep.Summary()).Error
	})
	if err != nil {
		m.log.Warn("could not record the verify result", "err", err)
	}
}
