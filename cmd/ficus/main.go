// Command ficus runs and operates a strangler-fig migration: the facade, the modular
// monolith, the extracted services and the event bus, one binary with many targets.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		var ue usageError
		var ee exitError
		if !errors.As(err, &ee) && (!errors.As(err, &ue) || ue.msg != "") {
			fmt.Fprintln(os.Stderr, "ficus:", err)
		}
		os.Exit(exitCode(err))
	}
}

// command is one ficus subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"up":     {"start every component in config.yaml, each its own process", cmdUp},
		"serve":  {"run one component: facade | monolith | bus", cmdServe},
		"check":  {"validate config.yaml; exit 1 with file:line messages", cmdCheck},
		"routes": {"print the facade's live route table", cmdRoutes},
		"events": {"watch events; list and replay dead letters", cmdEvents},
		"bench":  {"measure throughput and latency: bench orders | events | facade", cmdBench},
	}
}

// run is the whole program, minus the process: arguments, environment and output come in.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return c.run(ctx, args[1:], getenv, stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: ficus COMMAND [flags]")
	fmt.Fprintln(w)
	for _, name := range []string{"up", "serve", "check", "routes", "events", "bench"} {
		fmt.Fprintf(w, "  %-8s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'ficus COMMAND -h' for a command's flags.")
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries a chosen exit status whose message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	var ue usageError
	var ee exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return 2
	}
	return 1
}
