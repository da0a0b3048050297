package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/ficus-project/ficus/platform/config"
)

// cmdCheck validates a config file and prints every problem, or a summary.
func cmdCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	cfg, err := config.Load(*path)
	var cerr *config.Error
	if errors.As(err, &cerr) {
		for _, p := range cerr.Problems {
			fmt.Fprintln(stderr, p.Error())
		}
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(cerr.Problems))
		return exitError{1}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is valid: %d backend(s), %d route(s)\n", *path, len(cfg.Backends), len(cfg.Routes))
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
		fmt.Fprintf(stdout, "  %-24s → %s%s\n", r.Match.Path, r.To, extra)
	}
	mods := make([]string, 0, len(cfg.Monolith.Modules))
	for m, mode := range cfg.Monolith.Modules {
		mods = append(mods, m+"="+mode)
	}
	sort.Strings(mods)
	fmt.Fprintf(stdout, "  monolith modules: %v\n", mods)
	return nil
}
