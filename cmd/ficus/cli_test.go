package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// walk calls f with the path of every command in the tree ("serve facade"), hidden ones too.
func walk(c *command, path []string, f func(path []string, c *command)) {
	f(path, c)
	for _, s := range c.subs {
		walk(s, append(append([]string(nil), path...), s.name), f)
	}
}

// runCLI runs ficus in process and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing here may start serving; a command that tries stops at once
	err := run(ctx, args, func(string) string { return "" }, &out, &errw)
	report(&errw, err)
	return exitCode(err), out.String(), errw.String()
}

// TestEveryCommandHasHelp: -h, -help, --help and `ficus help PATH` work on every command and
// subcommand, exit 0, and show the usage line, what it does and an example.
func TestEveryCommandHasHelp(t *testing.T) {
	walk(rootCommand(), nil, func(path []string, c *command) {
		name := strings.Join(append([]string{"ficus"}, path...), " ")
		forms := [][]string{
			append(append([]string(nil), path...), "-h"),
			append(append([]string(nil), path...), "--help"),
			append([]string{"help"}, path...),
		}
		for _, args := range forms {
			code, out, errOut := runCLI(t, args...)
			if code != 0 {
				t.Errorf("ficus %s: exit %d, want 0\n%s", strings.Join(args, " "), code, errOut)
				continue
			}
			for _, want := range []string{"Usage: " + name, "Examples:\n  ficus"} {
				if !strings.Contains(out, want) {
					t.Errorf("ficus %s lacks %q:\n%s", strings.Join(args, " "), want, out)
				}
			}
		}
		if c.run != nil && c.summary == "" {
			t.Errorf("%s has no summary", name)
		}
	})
}

// TestHelpListsOneFlagALine: each flag appears once, on its own line, as "-name", so that the
// README's command table can be compared with it.
func TestHelpListsOneFlagALine(t *testing.T) {
	_, out, _ := runCLI(t, "serve", "facade", "-h")
	for _, want := range []string{"\n  -admin ADDR ", "\n  -c FILE ", "\n  -listen ADDR "} {
		if strings.Count(out, want) != 1 {
			t.Errorf("serve facade -h: want one line starting %q:\n%s", want, out)
		}
	}
	_, out, _ = runCLI(t, "events", "tail", "-h")
	if !strings.Contains(out, "\n  -timeout DURATION ") || !strings.Contains(out, "(default 10s)") {
		t.Errorf("events tail -h: no -timeout DURATION line with its default:\n%s", out)
	}
}

// TestStrayArgumentsAreRefused: what a command does not understand is an error (exit 2) that
// says what was meant, never silently ignored.
func TestStrayArgumentsAreRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "some.yaml")
	if err := os.WriteFile(cfg, []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "some.yaml"}, "did you mean -c some.yaml?"},
		{[]string{"check", cfg}, "did you mean -c " + cfg + "?"},
		{[]string{"up", "extra"}, `ficus up takes no arguments, got ["extra"]`},
		{[]string{"serve", "facade", "127.0.0.1:8080"}, "did you mean -listen 127.0.0.1:8080?"},
		{[]string{"routes", "http://127.0.0.1:9900"}, "did you mean -admin http://127.0.0.1:9900?"},
		{[]string{"bench", "orders", "http://127.0.0.1:8080"}, "did you mean -url http://127.0.0.1:8080?"},
		{[]string{"serve"}, "ficus serve needs a component: facade | monolith | inventory | payments | bus"},
		{[]string{"serve", "facde"}, `unknown component "facde" for ficus serve; did you mean facade?`},
		{[]string{"serve", "-c", "x.yaml"}, "needs a component before any flag"},
		{[]string{"events", "dlq"}, "needs a command: list | replay"},
		{[]string{"events", "dlq", "replay"}, "takes one event ID or dead-letter SEQ, or -all"},
		{[]string{"events", "dlq", "replay", "-all", "42"}, "not both"},
		{[]string{"events", "tail", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"help", "serve", "nothing"}, `ficus serve has no component "nothing"`},
		{[]string{"bench", "orders", "-n", "0"}, "-n 0, -clients 16: both must be at least 1"}, {[]string{"bench", "orders", "-n", "2000000"}, "-n 2000000 is not between 1 and"},
		{[]string{"bench", "orders", "-db", "mysql://x"}, `-db "mysql://x": want sqlite or a postgres:// URL`},
		{[]string{"up", "-ready-timeout", "0s"}, "-ready-timeout must be positive"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ficus %s: exit %d, want 2 and %q in:\n%s", strings.Join(tc.args, " "), code, tc.want, errOut)
		}
		if code == 2 && !strings.Contains(errOut, "-h' for usage.") {
			t.Errorf("ficus %s: the error does not point at -h:\n%s", strings.Join(tc.args, " "), errOut)
		}
	}
}

// TestFlagsMayFollowArguments: `dlq replay 42 -c x.yaml` reads -c.
func TestFlagsMayFollowArguments(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := fs.String("c", "config.yaml", "")
	all := fs.Bool("all", false, "")
	pos, err := parseInterleaved(fs, []string{"42", "-c", "x.yaml", "43", "-all", "--", "-not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if *c != "x.yaml" || !*all || strings.Join(pos, " ") != "42 43 -not-a-flag" {
		t.Errorf("got -c %q -all %v, positional %q", *c, *all, pos)
	}
	if _, err := parseInterleaved(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"serve", "serve", 0}, {"servee", "serve", 1}, {"facde", "facade", 1}, {"", "up", 2}, {"bench", "check", 4}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
