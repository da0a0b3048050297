package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"

	"github.com/ficus-project/ficus/platform/config"
)

// checkCommand validates a config file and prints every problem, or a summary.
func checkCommand() *command {
	var path string
	return &command{
		name:    "check",
		summary: "validate a config file; exit 1 with file:line:col messages",
		about: `Validates a config file and prints every problem at once, one a line, as
FILE:LINE:COL: FIELD: MESSAGE, then exits 1. A valid file gets a summary of its routes.`,
		examples: []string{"ficus check", "ficus check -c staging.yaml"},
		flags:    func(fs *flag.FlagSet) { configFlag(fs, &path) },
		run: func(ctx context.Context, e env, _ []string) error {
			cfg, err := config.Load(path)
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(e.stderr, p.Error())
				}
				fmt.Fprintf(e.stderr, "%s: %d problem(s)\n", path, len(cerr.Problems))
				return exitError{1}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s is valid: %d backend(s), %d route(s)\n", path, len(cfg.Backends), len(cfg.Routes))
			for _, r := range cfg.Routes {
				extra := ""
				if r.Shadow != nil {
					extra += " shadow→" + r.Shadow.To
				}
				if r.Canary != nil {
					extra += fmt.Sprintf(" canary→%s %g%%", r.Canary.To, r.Canary.Percent)
				}
				if r.Fallback != "" {
					extra += " fallback→" + r.Fallback
				}
				fmt.Fprintf(e.stdout, "  %-24s → %s%s\n", r.Match.Path, r.To, extra)
			}
			mods := make([]string, 0, len(cfg.Monolith.Modules))
			for m, mode := range cfg.Monolith.Modules {
				mods = append(mods, m+"="+mode)
			}
			sort.Strings(mods)
			fmt.Fprintf(e.stdout, "  monolith modules: %v\n", mods)
			return nil
		},
	}
}
