package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/facade/gate"
	"github.com/ficus-project/ficus/platform/config"
)

// promoteCommand moves a route one stage on when its gates hold.
func promoteCommand() *command {
	var path, adminURL string
	var timeout time.Duration
	var force bool
	return &command{
		name:    "promote",
		args:    "ROUTE",
		summary: "move a route one stage on (shadow → canary → full) when its gates hold",
		about: `Moves a route one stage on: from its shadow to a canary at the first of promote.steps
(default 10%), from a canary to the next step, from the last step to full (the candidate
becomes the route's backend, the old one its fallback). It edits the config file in place —
only the lines it must, every comment and the layout kept — and writes it atomically; the
running facade picks the change up as with any edit.

It acts only when the route's gates hold, as the running facade judges them over the gates'
window (GET /api/promotion): the diff rate below max_diff_rate over at least min_samples
compared pairs, the candidate's error rate within max_error_rate and within
max_error_increase of the primary's, its p99 within max_p99, and its latencies not
significantly slower than the primary's (Mann-Whitney U test). It prints every gate with its
figures, and refuses, exit 1, naming the gate that failed. -force promotes anyway (and
without a running facade). The file's route must be the one the facade serves: an edit not
yet loaded is refused.

A canary a facade rolled back is at 0% in the file: without a shadow there is nothing to
promote (set canary.percent by hand once the candidate is fixed); with one, the route is in
its shadow stage again and goes to the first step.

ROUTE is a route's name, or its match path when only one route has it. The admin API and
its token are found as for ficus routes.`,
		examples: []string{"ficus promote inventory-reads", "ficus promote -force /api/inventory"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&adminURL, "admin", "", "admin API `URL` (default: http:// and facade.admin.listen from the config)")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
			fs.BoolVar(&force, "force", false, "promote even when a gate fails, or the facade cannot be asked")
		},
		nargs: func(args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("takes one ROUTE, got %d arguments", len(args))
			}
			return nil
		},
		run: func(ctx context.Context, e env, args []string) error {
			return runPromote(ctx, e, path, adminURL, args[0], timeout, force)
		},
	}
}

func runPromote(ctx context.Context, e env, path, adminURL, route string, timeout time.Duration, force bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	out, step, err := config.PromoteRoute(path, data, route)
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				fmt.Fprintln(e.stderr, p.Error())
			}
			return exitError{1}
		}
		return err
	}
	fmt.Fprintf(e.stdout, "Route %s: %s → %s (candidate %s, primary %s)\n", step.Route, step.From, step.To, step.Candidate, step.Primary)

	cfg, err := config.Parse(path, data)
	if err != nil {
		return err
	}
	gatesHeld, err := judgeGates(ctx, e, cfg, adminURL, step, timeout)
	switch {
	case err != nil && !force:
		return err
	case err != nil:
		fmt.Fprintf(e.stderr, "warning: %v; promoting anyway (-force)\n", err)
	case !gatesHeld && !force:
		return exitError{1}
	case !gatesHeld:
		fmt.Fprintln(e.stderr, "warning: promoting although a gate failed (-force)")
	}

	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	// Atomically: the facade watching the file never reads half of it.
	if err := renameio.WriteFile(path, out, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	writeLineDiff(e.stdout, string(data), string(out))
	fmt.Fprintf(e.stdout, "%s written: route %s is at %s; the running facade reloads it (ficus routes shows it).\n", path, step.Route, step.To)
	return nil
}

// judgeGates asks the running facade for the route's gates and prints them. It reports
// whether they all hold; its error says the facade could not be asked, or serves another
// version of the route than the file.
func judgeGates(ctx context.Context, e env, cfg *config.Config, adminURL string, step config.Step, timeout time.Duration) (bool, error) {
	if adminURL == "" {
		adminURL = facadeAdminURL(cfg.Facade.Admin.Listen)
	}
	token, source, err := facade.ReadAdminToken(cfg, e.getenv)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all, err := facade.FetchPromotion(ctx, &http.Client{}, adminURL, token)
	if err != nil {
		return false, fmt.Errorf("asking the running facade for the gates: %w (admin API %s, token from %s)", err, adminURL, source)
	}
	var p *facade.RoutePromotion
	for i := range all {
		if all[i].Route == step.Route {
			p = &all[i]
		}
	}
	live := "full (no shadow, no canary)"
	if p != nil {
		live = p.Stage
		if p.Stage == "canary" {
			live = fmt.Sprintf("canary %g%%", p.Percent)
		}
	}
	if p == nil || live != step.From || p.Candidate != step.Candidate {
		return false, fmt.Errorf("the running facade serves route %s at %s, the file says %s with candidate %s: "+
			"it has not loaded the file's version (see ficus routes and GET /api/reload); promote judges the gates of what runs", step.Route, live, step.From, step.Candidate)
	}
	fmt.Fprintf(e.stdout, "Gates over the last %s (facade at %s):\n", p.Window, adminURL)
	writeGates(e.stdout, p.Gates)
	failed := 0
	for _, g := range p.Gates {
		if !g.OK {
			failed++
			fmt.Fprintf(e.stderr, "ficus promote: refused: gate %s failed: %s\n", g.Gate, g.Detail)
		}
	}
	if failed > 0 {
		fmt.Fprintf(e.stderr, "ficus promote: %s stays at %s (-force promotes anyway)\n", step.Route, step.From)
	}
	return failed == 0, nil
}

func writeGates(w io.Writer, gates []gate.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range gates {
		verdict := "ok"
		if !g.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", verdict, g.Gate, g.Detail)
	}
	_ = tw.Flush()
}

// writeLineDiff prints the lines that differ between a and b, - then +, with a line of
// context on either side: what an edit did.
func writeLineDiff(w io.Writer, a, b string) {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// The common prefix and suffix; promote edits one route, so what lies between is short.
	p := 0
	for p < len(x) && p < len(y) && x[p] == y[p] {
		p++
	}
	s := 0
	for s < len(x)-p && s < len(y)-p && x[len(x)-1-s] == y[len(y)-1-s] {
		s++
	}
	if p > 0 {
		fmt.Fprintf(w, "  %s\n", x[p-1])
	}
	for _, l := range x[p : len(x)-s] {
		fmt.Fprintf(w, "- %s\n", l)
	}
	for _, l := range y[p : len(y)-s] {
		fmt.Fprintf(w, "+ %s\n", l)
	}
	if s > 0 && len(x)-s < len(x) {
		fmt.Fprintf(w, "  %s\n", x[len(x)-s])
	}
}
