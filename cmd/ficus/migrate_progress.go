package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/ficus-project/ficus/platform/migrate"
)

// progress shows where a backfill or verify stands: a bar per table on a terminal, a line
// per table at most every second otherwise (logs and CI keep plain lines).
type progress struct {
	w     io.Writer
	tty   bool
	bar   *progressbar.ProgressBar
	table string
	total int64
	// last is when the last plain line was written.
	last time.Time
	// lastDone is the count the last plain line showed.
	lastDone int64
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w)}
}

// update shows p; it is migrate.Options.Progress.
func (p *progress) update(pr migrate.Progress) {
	if pr.Table == "" {
		return
	}
	if pr.Table != p.table {
		p.finish()
		p.table, p.total, p.lastDone = pr.Table, pr.Total, -1
		if p.tty {
			p.bar = progressbar.NewOptions64(max(pr.Total, 1),
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(fmt.Sprintf("  %-28s", pr.Table)),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("rows"),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
			)
		}
	}
	if pr.Total > p.total {
		p.total = pr.Total
		if p.bar != nil {
			p.bar.ChangeMax64(pr.Total)
		}
	}
	if p.bar != nil {
		_ = p.bar.Set64(pr.Done)
		return
	}
	if pr.Done == p.lastDone || (time.Since(p.last) < time.Second && pr.Done < p.total) {
		return
	}
	p.last, p.lastDone = time.Now(), pr.Done
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(pr.Done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "  %s %s: %s/%s rows (%.0f%%)\n", pr.Op, pr.Table, grouped(pr.Done), grouped(p.total), pct)
}

// finish completes the current table's bar.
func (p *progress) finish() {
	if p.bar != nil {
		if !p.bar.IsFinished() {
			_ = p.bar.Finish()
		}
		p.bar = nil
	}
}

// syncProgress prints what sync applies, at most every two seconds.
type syncProgress struct {
	w    io.Writer
	last time.Time
}

func newSyncProgress(w io.Writer) *syncProgress { return &syncProgress{w: w} }

func (s *syncProgress) update(pr migrate.Progress) {
	if pr.Op != "sync" || time.Since(s.last) < 2*time.Second {
		return
	}
	s.last = time.Now()
	fmt.Fprintf(s.w, "  applied up to stream sequence %d: %s events read, lag %s\n", pr.Seq, grouped(pr.Events), pr.Lag.Round(time.Millisecond))
}
