package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ficus-project/ficus/platform/outbox/bench"
)

// cmdBenchEvents measures events end to end (state change committed with its outbox row →
// relay → embedded JetStream → consumer applied through its inbox), and, as the baseline of
// the same run, the pipeline alone draining a backlog already committed.
func cmdBenchEvents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 10000, "events (state changes) per run")
	rate := fs.Int("rate", 0, "pace producers at this many events/s (0: flat out)")
	producers := fs.Int("producers", 2, "goroutines committing changes")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	runs := []struct {
		name string
		opts bench.Options
	}{
		{"end to end", bench.Options{Events: *n, Rate: *rate, Producers: *producers}},
		{"pipeline only (backlog)", bench.Options{Events: *n, Producers: *producers, Backlog: true}},
	}
	var results []bench.Result
	for _, r := range runs {
		dir, err := os.MkdirTemp("", "ficus-bench-events-")
		if err != nil {
			return err
		}
		r.opts.Dir = dir
		res, err := bench.EndToEnd(ctx, r.opts)
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("bench events (%s): %w", r.name, err)
		}
		results = append(results, res)
		fmt.Fprintf(stdout, "events %-24s %s\n", r.name+":", res)
	}
	if base := results[1].Throughput; base > 0 {
		fmt.Fprintf(stdout, "end to end runs at %.2f× the pipeline's own drain rate: the producing side (one SQLite writer) is the limit when this is well below 1\n",
			results[0].Throughput/base)
	}
	return nil
}
