package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// env is what a command gets from the process it runs in.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// command is one node of ficus's command tree: a leaf runs, a group dispatches to its subs.
// Every node answers -h (and `ficus help PATH`) with its usage, and refuses what it does not
// understand: unknown flags, unknown subcommands and positional arguments it does not take.
type command struct {
	name string
	// args names the positional arguments in the usage line ("ID|SEQ"); empty: none.
	args string
	// summary is one line for the parent's list.
	summary string
	// about is the description -h prints, one or more paragraphs.
	about string
	// examples are complete command lines, shown by -h.
	examples []string
	// flags declares the leaf's flags on fs; the run closure reads them.
	flags func(fs *flag.FlagSet)
	// nargs checks the positional arguments; nil allows none.
	nargs func(args []string) error
	// run does the leaf's work.
	run func(ctx context.Context, e env, args []string) error
	// subs are a group's subcommands, in the order -h lists them.
	subs []*command
	// hidden leaves the command out of its parent's list: the processes other commands start.
	hidden bool
}

// usageError is a mistake in the command line: exit status 2, and a pointer to the help of
// the command it concerns.
type usageError struct {
	// path is the command the mistake concerns ("ficus serve facade").
	path string
	msg  string
}

func (e usageError) Error() string { return e.msg }

// exitError carries a chosen exit status whose message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode maps run's error to the process's exit status.
func exitCode(err error) int {
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// report prints err for the person at the terminal, as main does before it exits.
func report(w io.Writer, err error) {
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		// Already said.
	case errors.As(err, &ue):
		fmt.Fprintf(w, "ficus: %s\nRun '%s -h' for usage.\n", ue.msg, ue.path)
	default:
		fmt.Fprintln(w, "ficus:", err)
	}
}

// execute runs c with args; path is the command line that led to c ("ficus serve").
func (c *command) execute(ctx context.Context, e env, path string, args []string) error {
	path = strings.TrimSpace(path + " " + c.name)
	if len(c.subs) > 0 {
		return c.dispatch(ctx, e, path, args)
	}
	fs := c.flagSet(path)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return c.writeHelp(e.stdout, path, fs)
	}
	if err != nil {
		return usageError{path, err.Error()}
	}
	if c.nargs == nil && len(pos) > 0 {
		return usageError{path, fmt.Sprintf("%s takes no arguments, got %q%s", path, pos, hint(fs, pos[0]))}
	}
	if c.nargs != nil {
		if err := c.nargs(pos); err != nil {
			return usageError{path, fmt.Sprintf("%s: %v", path, err)}
		}
	}
	return c.run(ctx, e, pos)
}

// dispatch hands args to the group's subcommand they name.
func (c *command) dispatch(ctx context.Context, e env, path string, args []string) error {
	if len(args) == 0 {
		return usageError{path, fmt.Sprintf("%s needs a %s: %s", path, c.argName(), strings.Join(c.visibleNames(), " | "))}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		return c.writeHelp(e.stdout, path, nil)
	case "help":
		if path == "ficus" {
			return c.help(e, args[1:])
		}
	}
	sub := c.find(args[0])
	if sub == nil {
		msg := fmt.Sprintf("unknown %s %q for %s", c.argName(), args[0], path)
		if strings.HasPrefix(args[0], "-") {
			msg = fmt.Sprintf("%s needs a %s before any flag, got %q", path, c.argName(), args[0])
		} else if s := c.suggest(args[0]); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", s)
		}
		return usageError{path, msg}
	}
	return sub.execute(ctx, e, path, args[1:])
}

// help prints the usage of the command args names: `ficus help serve facade`.
func (c *command) help(e env, args []string) error {
	node, path := c, "ficus"
	for _, a := range args {
		sub := node.find(a)
		if sub == nil {
			return usageError{"ficus help", fmt.Sprintf("no help for %q: %s has no %s %q", strings.Join(args, " "), path, node.argName(), a)}
		}
		node, path = sub, path+" "+a
	}
	var fs *flag.FlagSet
	if len(node.subs) == 0 {
		fs = node.flagSet(path)
	}
	return node.writeHelp(e.stdout, path, fs)
}

func (c *command) find(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// argName is what a group calls its subcommands in messages: the args of its usage line in
// lower case ("component"), or "command".
func (c *command) argName() string {
	if c.args != "" {
		return strings.ToLower(c.args)
	}
	return "command"
}

func (c *command) visibleNames() []string {
	var names []string
	for _, s := range c.subs {
		if !s.hidden {
			names = append(names, s.name)
		}
	}
	return names
}

// suggest returns the subcommand name closest to a mistyped one, if one is close.
func (c *command) suggest(typed string) string {
	best, bestD := "", 3
	for _, name := range c.visibleNames() {
		if d := editDistance(typed, name); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

func (c *command) flagSet(path string) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and reported once, by main
	fs.Usage = func() {}
	if c.flags != nil {
		c.flags(fs)
	}
	return fs
}

// writeHelp prints c's usage: the usage line, what it does, its subcommands or its flags
// (one a line: `  -name VALUE  what it is (default X)`), and examples.
func (c *command) writeHelp(w io.Writer, path string, fs *flag.FlagSet) error {
	line := path
	switch {
	case len(c.subs) > 0:
		line += " " + strings.ToUpper(c.argName())
	default:
		if fs != nil && hasFlags(fs) {
			line += " [flags]"
		}
		if c.args != "" {
			line += " " + c.args
		}
	}
	fmt.Fprintf(w, "Usage: %s\n", line)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.about))
	} else if c.summary != "" {
		fmt.Fprintf(w, "\n%s.\n", upperFirst(c.summary))
	}
	if len(c.subs) > 0 {
		title := "Commands"
		if c.args != "" {
			title = plural(upperFirst(strings.ToLower(c.args)))
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for _, s := range c.subs {
			if !s.hidden {
				fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
			}
		}
		_ = tw.Flush()
	}
	if fs != nil && hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags:")
		writeFlags(w, fs)
	}
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range c.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
	if len(c.subs) > 0 {
		fmt.Fprintf(w, "\nRun '%s %s -h' for its flags.\n", path, strings.ToUpper(c.argName()))
	}
	return nil
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// writeFlags prints one flag a line, in name order, as `-name VALUE  usage (default X)`. The
// VALUE placeholder is the back-quoted word of the flag's usage, or its type.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name == strings.ToLower(name) {
			name = strings.ToUpper(name) // a type ("duration"), shown like the named placeholders
		}
		head := "  -" + f.Name
		if name != "" {
			head += " " + name
		}
		if !isZeroDefault(f) && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "%s\t%s\n", head, usage)
	})
	_ = tw.Flush()
}

func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// parseInterleaved parses args with fs, letting flags follow positional arguments
// (`dlq replay 42 -c x.yaml`), and returns the positional arguments. Everything after "--"
// is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return append(pos, rest...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// hint guesses what a stray positional argument was meant to be, from its shape and the
// command's flags: a config file for -c, an address for -listen, a URL for -url.
func hint(fs *flag.FlagSet, arg string) string {
	has := func(name string) bool { return fs.Lookup(name) != nil }
	ext := strings.ToLower(filepath.Ext(arg))
	_, statErr := os.Stat(arg)
	switch {
	case has("c") && fs.Lookup("c").DefValue == "config.yaml" && (ext == ".yaml" || ext == ".yml" || statErr == nil):
		return fmt.Sprintf("; did you mean -c %s?", arg)
	case has("url") && (strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://")):
		return fmt.Sprintf("; did you mean -url %s?", arg)
	case has("admin") && (strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://")):
		return fmt.Sprintf("; did you mean -admin %s?", arg)
	case has("listen") && isHostPort(arg):
		return fmt.Sprintf("; did you mean -listen %s?", arg)
	}
	return ""
}

func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}

// plural is the plural of an English noun, as the titles of subcommand lists need it.
func plural(s string) string {
	if t, ok := strings.CutSuffix(s, "y"); ok {
		return t + "ies"
	}
	return s + "s"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// configFlag declares -c, the config file every command that reads one takes.
func configFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "c", "config.yaml", "read the config from `FILE`")
}
