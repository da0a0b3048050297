// Command ficus runs and operates a strangler-fig migration: the facade, the modular
// monolith, the extracted services and the event bus, one binary with many targets.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	report(os.Stderr, err)
	os.Exit(exitCode(err))
}

// run is the whole program, minus the process: arguments, environment and output come in.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	root := rootCommand()
	if len(args) == 0 {
		return root.writeHelp(stdout, "ficus", nil)
	}
	return root.execute(ctx, e, "", args)
}

// rootCommand is ficus's command tree, built anew for each run so that flag values never
// outlive one.
func rootCommand() *command {
	return &command{
		name: "ficus",
		about: `Ficus takes a monolith apart one capability at a time: a routing facade in front of a
modular monolith and the services extracted from it, with an event bus between them.
One binary runs every component and the tools to operate them.`,
		examples: []string{
			"ficus up                       # everything in config.yaml, with demo data",
			"ficus check -c config.yaml     # validate a config",
			"ficus help serve facade        # the same as: ficus serve facade -h",
		},
		subs: []*command{
			upCommand(),
			serveCommand(),
			checkCommand(),
			compareCommand(),
			routesCommand(),
			planCommand(),
			promoteCommand(),
			eventsCommand(),
			benchCommand(),
			migrateCommand(),
			sagasCommand(),
			controlCommand("stop"),
			controlCommand("start"),
		},
	}
}
