package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

const eventsUsage = "events needs a subcommand: tail | dlq list | dlq replay ID|SEQ|--all"

// cmdEvents watches events and manages dead letters:
//
//	ficus events tail [-c config.yaml] [-all]
//	ficus events dlq list [-c config.yaml]
//	ficus events dlq replay [-c config.yaml] [-consumer NAME] ID|SEQ|--all
func cmdEvents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{eventsUsage}
	}
	switch {
	case args[0] == "tail":
		return eventsTail(ctx, args[1:], stdout, stderr)
	case args[0] == "dlq" && len(args) > 1 && args[1] == "list":
		return eventsDLQList(ctx, args[2:], stdout, stderr)
	case args[0] == "dlq" && len(args) > 1 && args[1] == "replay":
		return eventsDLQReplay(ctx, args[2:], stdout, stderr)
	}
	return usageError{eventsUsage}
}

// eventsFlags are the flags every events subcommand takes.
type eventsFlags struct {
	fs      *flag.FlagSet
	path    *string
	timeout *time.Duration
}

func newEventsFlags(name string, stderr io.Writer) eventsFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return eventsFlags{
		fs:      fs,
		path:    fs.String("c", "config.yaml", "config file"),
		timeout: fs.Duration("timeout", 10*time.Second, "how long to wait for the bus"),
	}
}

// parse parses args, allowing flags after positional arguments, and returns the positional
// ones.
func (f eventsFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, usageError{}
		}
		if f.fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
}

// connect loads the config and connects to its bus.
func (f eventsFlags) connect(ctx context.Context) (*bus.Bus, error) {
	cfg, err := config.Load(*f.path)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, *f.timeout)
	defer cancel()
	b, err := bus.Connect(cctx, cfg.Events, bus.Options{Name: "ficus-cli"})
	if err != nil {
		return nil, fmt.Errorf("%w (is the bus running? try ficus up or ficus serve bus)", err)
	}
	return b, nil
}

// connectNoArgs parses args, which must hold flags only, and connects to the bus.
func (f eventsFlags) connectNoArgs(ctx context.Context, args []string) (*bus.Bus, error) {
	pos, err := f.parse(args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usageError{fmt.Sprintf("%s takes no arguments, got %q", f.fs.Name(), pos)}
	}
	return f.connect(ctx)
}

// eventsTail prints events as they are published until interrupted.
func eventsTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags("events tail", stderr)
	all := f.fs.Bool("all", false, "start from the oldest event kept rather than from now")
	b, err := f.connectNoArgs(ctx, args)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.Tail(ctx, *all, func(e event.Event, subject string) error {
		note := ""
		if strings.HasPrefix(subject, bus.ReplayPrefix) {
			note = "  (replay)"
		}
		_, err := fmt.Fprintf(stdout, "%s  %-40s  %-24s  %s%s\n",
			e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Type, eventsDash(e.Subject), e.ID, note)
		return err
	})
}

// eventsDLQList prints the dead letters.
func eventsDLQList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags("events dlq list", stderr)
	b, err := f.connectNoArgs(ctx, args)
	if err != nil {
		return err
	}
	defer b.Close()
	dls, err := b.DeadLetters(ctx)
	if err != nil {
		return err
	}
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tCONSUMER\tTYPE\tSUBJECT\tEVENT\tATTEMPTS\tFAILED\tERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Consumer, eventsDash(d.Event.Type), eventsDash(d.Event.Subject),
			eventsDash(d.Event.ID), d.Attempts, d.FailedAt.UTC().Format(time.RFC3339), d.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead letter(s); replay with: ficus events dlq replay ID|SEQ|--all\n", len(dls))
	return nil
}

// eventsDLQReplay delivers dead letters again to the consumers that gave up on them.
func eventsDLQReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags("events dlq replay", stderr)
	all := f.fs.Bool("all", false, "replay every dead letter")
	consumer := f.fs.String("consumer", "", "only dead letters of this consumer")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if *all == (len(pos) == 1) || len(pos) > 1 {
		return usageError{"events dlq replay takes one event ID or dead-letter SEQ, or --all"}
	}
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
		if *consumer != "" && d.Consumer != *consumer {
			continue
		}
		if *all || d.Event.ID == pos[0] || strconv.FormatUint(d.Seq, 10) == pos[0] {
			picked = append(picked, d)
		}
	}
	if len(picked) == 0 {
		if *all {
			fmt.Fprintln(stdout, "no dead letters to replay")
			return nil
		}
		return fmt.Errorf("no dead letter matches %q (see ficus events dlq list)", pos[0])
	}
	var errs []error
	for _, d := range picked {
		if err := b.Replay(ctx, d.Seq); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "replayed dead letter %d: %s %s to consumer %s\n", d.Seq, eventsDash(d.Event.Type), eventsDash(d.Event.ID), d.Consumer)
	}
	return errors.Join(errs...)
}

// cmdServeBus runs the embedded NATS JetStream server until interrupted:
//
//	ficus serve bus [-c config.yaml] [-listen ADDR]
func cmdServeBus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve bus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file")
	listen := fs.String("listen", "", "listen address (default: events.embedded.listen from the config)")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("serve bus takes no arguments, got %q", fs.Args())}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.Events.Bus != "embedded" {
		return fmt.Errorf("events.bus is %s, an external NATS server: there is no embedded bus to serve (set events.bus: embedded, or run nats-server -js yourself)",
			config.Redact(cfg.Events.Bus))
	}
	if *listen != "" {
		cfg.Events.Embedded.Listen = *listen
	}
	logger := newLogger(stderr, getenv).With("component", "bus")
	return bus.ServeEmbedded(ctx, cfg.Events, cfg.Resolve, logger, func(addr string) {
		fmt.Fprintf(stdout, "bus listening on nats://%s (store %s)\n", addr, cfg.Resolve(cfg.Events.Embedded.Store))
	})
}

// eventsDash stands in for an empty field.
func eventsDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
