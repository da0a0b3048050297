package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

// eventsCommand watches events and manages dead letters.
func eventsCommand() *command {
	return &command{
		name:    "events",
		summary: "watch events; list and replay dead letters",
		about: `Watches the events the components publish, and lists and replays the dead letters: events a
consumer gave up on after its attempts. Every subcommand connects to the bus config.yaml
names (events.bus).`,
		examples: []string{"ficus events tail -all", "ficus events dlq list", "ficus events dlq replay 42"},
		subs: []*command{eventsTailCommand(), {
			name:    "dlq",
			summary: "list and replay dead letters: dlq list | dlq replay",
			about:   "Lists the dead letters and delivers them again to the consumers that gave up on them.",
			examples: []string{
				"ficus events dlq list",
				"ficus events dlq replay -all -consumer inventory-projection",
			},
			subs: []*command{eventsDLQListCommand(), eventsDLQReplayCommand()},
		}},
	}
}

// eventsFlags are the flags every events subcommand takes.
type eventsFlags struct {
	path    string
	timeout time.Duration
}

func (f *eventsFlags) declare(fs *flag.FlagSet) {
	configFlag(fs, &f.path)
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the bus")
}

// connect loads the config and connects to its bus.
func (f *eventsFlags) connect(ctx context.Context) (*bus.Bus, error) {
	cfg, err := config.Load(f.path)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	b, err := bus.Connect(cctx, cfg.Events, bus.Options{Name: "ficus-cli"})
	if err != nil {
		return nil, fmt.Errorf("%w (is the bus running? try ficus up or ficus serve bus)", err)
	}
	return b, nil
}

// eventsTailCommand prints events as they are published until interrupted.
func eventsTailCommand() *command {
	var f eventsFlags
	var all bool
	return &command{
		name:    "tail",
		summary: "print events as they are published, until interrupted",
		about: `Prints each event as it is published, one a line: time, type, subject and id; a replayed
dead letter is marked (replay). With -all it starts from the oldest event the bus keeps.`,
		examples: []string{"ficus events tail", "ficus events tail -all -c config.yaml"},
		flags: func(fs *flag.FlagSet) {
			f.declare(fs)
			fs.BoolVar(&all, "all", false, "start from the oldest event kept rather than from now")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			b, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			return b.Tail(ctx, all, func(ev event.Event, subject string) error {
				note := ""
				if strings.HasPrefix(subject, bus.ReplayPrefix) {
					note = "  (replay)"
				}
				_, err := fmt.Fprintf(e.stdout, "%s  %-40s  %-24s  %s%s\n",
					ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"), ev.Type, eventsDash(ev.Subject), ev.ID, note)
				return err
			})
		},
	}
}

// eventsDLQListCommand prints the dead letters.
func eventsDLQListCommand() *command {
	var f eventsFlags
	return &command{
		name:     "list",
		summary:  "list the dead letters",
		about:    "Lists the dead letters: sequence, consumer, event type, subject and id, attempts, when it failed and why.",
		examples: []string{"ficus events dlq list"},
		flags:    f.declare,
		run: func(ctx context.Context, e env, _ []string) error {
			b, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			dls, err := b.DeadLetters(ctx)
			if err != nil {
				return err
			}
			if len(dls) == 0 {
				fmt.Fprintln(e.stdout, "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tCONSUMER\tTYPE\tSUBJECT\tEVENT\tATTEMPTS\tFAILED\tERROR")
			for _, d := range dls {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Consumer, eventsDash(d.Event.Type), eventsDash(d.Event.Subject),
					eventsDash(d.Event.ID), d.Attempts, d.FailedAt.UTC().Format(time.RFC3339), d.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%d dead letter(s); replay with: ficus events dlq replay ID|SEQ|-all\n", len(dls))
			return nil
		},
	}
}

// eventsDLQReplayCommand delivers dead letters again to the consumers that gave up on them.
func eventsDLQReplayCommand() *command {
	var f eventsFlags
	var all bool
	var consumer string
	return &command{
		name:    "replay",
		args:    "ID|SEQ",
		summary: "deliver dead letters again to the consumers that gave up on them",
		about: `Delivers a dead letter again to the consumer that gave up on it: the one whose event ID or
dead-letter sequence number (SEQ, from ficus events dlq list) is given, or with -all every
one (of one consumer, with -consumer).`,
		examples: []string{
			"ficus events dlq replay 42",
			"ficus events dlq replay 0199a0c2-7d3e-7b1a-9f00-5b2c3d4e5f60",
			"ficus events dlq replay -all -consumer inventory-projection",
		},
		flags: func(fs *flag.FlagSet) {
			f.declare(fs)
			fs.BoolVar(&all, "all", false, "replay every dead letter (of -consumer, if given)")
			fs.StringVar(&consumer, "consumer", "", "only dead letters of this consumer `NAME`")
		},
		nargs: func(args []string) error {
			switch {
			case all && len(args) > 0:
				return fmt.Errorf("takes an ID or SEQ, or -all, not both (got -all and %q)", args)
			case !all && len(args) != 1:
				return fmt.Errorf("takes one event ID or dead-letter SEQ, or -all; got %q", args)
			}
			return nil
		},
		run: func(ctx context.Context, e env, args []string) error {
			b, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			dls, err := b.DeadLetters(ctx)
			if err != nil {
				return err
			}
			var picked []bus.DeadLetter
			for _, d := range dls {
				if consumer != "" && d.Consumer != consumer {
					continue
				}
				if all || d.Event.ID == args[0] || strconv.FormatUint(d.Seq, 10) == args[0] {
					picked = append(picked, d)
				}
			}
			if len(picked) == 0 {
				if all {
					fmt.Fprintln(e.stdout, "no dead letters to replay")
					return nil
				}
				return fmt.Errorf("no dead letter matches %q (see ficus events dlq list)", args[0])
			}
			var errs []error
			for _, d := range picked {
				if err := b.Replay(ctx, d.Seq); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.stdout, "replayed dead letter %d: %s %s to consumer %s\n", d.Seq, eventsDash(d.Event.Type), eventsDash(d.Event.ID), d.Consumer)
			}
			return errors.Join(errs...)
		},
	}
}

// serveBusCommand runs the embedded NATS JetStream server until interrupted.
func serveBusCommand() *command {
	var path, listenAddr string
	return &command{
		name:    "bus",
		summary: "the embedded NATS JetStream server (events.bus: embedded)",
		about: `Runs the embedded NATS server with JetStream, storing the event streams under
events.embedded.store, until interrupted. It refuses to run when events.bus names an external
NATS server. Its startup notices are logged only with FICUS_LOG=debug.`,
		examples: []string{"ficus serve bus", "ficus serve bus -listen 127.0.0.1:14222"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&listenAddr, "listen", "", "listen `ADDR` (default: events.embedded.listen from the config)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			inherited, err := listener.Inherit(e.getenv)
			if err != nil {
				return err
			}
			defer inherited.Close()
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if cfg.Events.Bus != "embedded" {
				return fmt.Errorf("events.bus is %s, an external bus: there is no embedded bus to serve (set events.bus: embedded, or run nats-server -js or Kafka yourself)",
					config.Redact(cfg.Events.Bus))
			}
			if listenAddr != "" {
				cfg.Events.Embedded.Listen = listenAddr
			}
			logger := newLogger(e.stderr, e.getenv).With("component", "bus")
			ready := func(addr string) {
				fmt.Fprintf(e.stdout, "bus listening on nats://%s (store %s)\n", addr, cfg.Resolve(cfg.Events.Embedded.Store))
			}
			if ln := inherited.Take("bus"); ln != nil {
				return bus.ServeEmbeddedOn(ctx, ln, cfg.Events, cfg.Resolve, logger, ready)
			}
			return bus.ServeEmbedded(ctx, cfg.Events, cfg.Resolve, logger, ready)
		},
	}
}

// eventsDash stands in for an empty field.
func eventsDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
