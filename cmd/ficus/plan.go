package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/platform/config"
)

// planCommand shows what a config edit would change in the running facade.
func planCommand() *command {
	var path, adminURL string
	var timeout time.Duration
	return &command{
		name:    "plan",
		summary: "what a config edit would change in the running facade's routes, before it is saved",
		about: `Compares a config file with the config the running facade serves, read from its admin API,
and prints what saving the file would change: per route (by name) the fields that change,
routes added and removed, routes whose order changes (order decides between routes of one
path), backends changed, and settings of the facade itself. Secrets are masked on both
sides. The file is validated first, as ficus check does: a file with problems is refused,
exit 1, with every problem.

Plan an edit before saving it over the watched file: write it to another file and pass
that with -c, and the admin API with -admin (or keep the same facade.admin settings). It
changes nothing.`,
		examples: []string{"ficus plan -c config.next.yaml", "ficus plan -c config.next.yaml -admin http://127.0.0.1:9900"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&adminURL, "admin", "", "admin API `URL` (default: http:// and facade.admin.listen from the config)")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			return runPlan(ctx, e, path, adminURL, timeout)
		},
	}
}

func runPlan(ctx context.Context, e env, path, adminURL string, timeout time.Duration) error {
	next, err := config.Load(path)
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				fmt.Fprintln(e.stderr, p.Error())
			}
			fmt.Fprintf(e.stderr, "%s: %d problem(s); the running facade would refuse it\n", path, len(cerr.Problems))
			return exitError{1}
		}
		return err
	}
	if adminURL == "" {
		adminURL = facadeAdminURL(next.Facade.Admin.Listen)
	}
	token, source, err := facade.ReadAdminToken(next, e.getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{}
	live, err := facade.FetchConfig(ctx, client, adminURL, token)
	if err != nil {
		return fmt.Errorf("%w (admin API %s, token from %s)", err, adminURL, source)
	}
	table, err := facade.FetchRoutes(ctx, client, adminURL, token)
	if err != nil {
		return fmt.Errorf("%w (admin API %s, token from %s)", err, adminURL, source)
	}
	changes := planChanges(live, next.Redacted())
	if len(changes) == 0 {
		fmt.Fprintf(e.stdout, "No changes: %s matches the running facade (config generation %d, %s).\n", path, table.Generation, adminURL)
		return nil
	}
	fmt.Fprintf(e.stdout, "Plan: %s against the running facade (config generation %d, %s)\n\n", path, table.Generation, adminURL)
	for _, c := range changes {
		c.write(e.stdout)
	}
	return nil
}

// change is one thing a plan changes: a route, a backend or a section, and its fields.
type change struct {
	// mark is "+" (added), "-" (removed) or "~" (changed).
	mark, what string
	fields     []fieldChange
	note       string
}

type fieldChange struct{ field, from, to string }

func (c change) write(w io.Writer) {
	fmt.Fprintf(w, "%s %s", c.mark, c.what)
	if c.note != "" {
		fmt.Fprintf(w, " (%s)", c.note)
	}
	fmt.Fprintln(w)
	for _, f := range c.fields {
		switch {
		case f.from == "":
			fmt.Fprintf(w, "    + %s: %s\n", f.field, f.to)
		case f.to == "":
			fmt.Fprintf(w, "    - %s: %s\n", f.field, f.from)
		default:
			fmt.Fprintf(w, "    ~ %s: %s → %s\n", f.field, f.from, f.to)
		}
	}
	fmt.Fprintln(w)
}

// planChanges lists what differs between the live config and the next one, both redacted:
// routes first (by name, in the next file's order), then backends, then the facade's own
// settings, then the sections the facade does not serve (which its reload ignores).
func planChanges(live, next *config.Config) []change {
	var out []change
	liveRoutes := map[string]config.Route{}
	var liveOrder []string
	for _, r := range live.Routes {
		liveRoutes[r.Name] = r
		liveOrder = append(liveOrder, r.Name)
	}
	var nextOrder []string
	for _, r := range next.Routes {
		nextOrder = append(nextOrder, r.Name)
		old, ok := liveRoutes[r.Name]
		if !ok {
			out = append(out, change{mark: "+", what: "route " + r.Name, fields: diffFields(nil, r)})
			continue
		}
		if fs := diffFields(old, r); len(fs) > 0 {
			note := ""
			if old.Stage() != r.Stage() || config.StageName(old) != config.StageName(r) {
				note = "stage " + config.StageName(old) + " → " + config.StageName(r)
			}
			out = append(out, change{mark: "~", what: "route " + r.Name, fields: fs, note: note})
		}
	}
	for _, name := range liveOrder {
		if !slices.Contains(nextOrder, name) {
			out = append(out, change{mark: "-", what: "route " + name, fields: diffFields(liveRoutes[name], nil)})
		}
	}
	// Order matters between routes of one path: say when it changes.
	var kept []string
	for _, n := range liveOrder {
		if slices.Contains(nextOrder, n) {
			kept = append(kept, n)
		}
	}
	var nextKept []string
	for _, n := range nextOrder {
		if slices.Contains(liveOrder, n) {
			nextKept = append(nextKept, n)
		}
	}
	if !slices.Equal(kept, nextKept) {
		out = append(out, change{mark: "~", what: "route order", fields: []fieldChange{{"routes", strings.Join(kept, ", "), strings.Join(nextKept, ", ")}}})
	}
	names := map[string]bool{}
	for n := range live.Backends {
		names[n] = true
	}
	for n := range next.Backends {
		names[n] = true
	}
	for _, n := range sortedNames(names) {
		a, inLive := live.Backends[n]
		b, inNext := next.Backends[n]
		switch {
		case !inLive:
			out = append(out, change{mark: "+", what: "backend " + n, fields: diffFields(nil, b)})
		case !inNext:
			out = append(out, change{mark: "-", what: "backend " + n, fields: diffFields(a, nil)})
		default:
			if fs := diffFields(a, b); len(fs) > 0 {
				out = append(out, change{mark: "~", what: "backend " + n, fields: fs, note: "starts with fresh breaker, bulkhead and health state"})
			}
		}
	}
	if fs := diffFields(live.Facade, next.Facade); len(fs) > 0 {
		out = append(out, change{mark: "~", what: "facade", fields: fs, note: "listen addresses, the admin token and the shadow queue need a restart"})
	}
	rest := func(c *config.Config) map[string]any {
		return map[string]any{"monolith": c.Monolith, "services": c.Services, "events": c.Events, "retention": c.Retention, "dry_run": c.DryRun}
	}
	if fs := diffFields(rest(live), rest(next)); len(fs) > 0 {
		out = append(out, change{mark: "~", what: "other components", fields: fs, note: "not the facade's: they take effect when those components restart"})
	}
	return out
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diffFields compares two values by their JSON form, field by field (dotted paths, lists
// of scalars as one value), and lists what differs. A nil side has no fields.
func diffFields(a, b any) []fieldChange {
	fa, fb := flatten(a), flatten(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []fieldChange
	for _, k := range sortedNames(keys) {
		if fa[k] != fb[k] {
			out = append(out, fieldChange{k, fa[k], fb[k]})
		}
	}
	return out
}

// flatten renders v's JSON form as dotted paths to leaf texts.
func flatten(v any) map[string]string {
	out := map[string]string{}
	if v == nil {
		return out
	}
	b, err := json.Marshal(v)
	if err != nil {
		return out
	}
	var tree any
	if json.Unmarshal(b, &tree) != nil {
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), c)
			}
		case []any:
			scalars := true
			for _, c := range x {
				switch c.(type) {
				case map[string]any, []any:
					scalars = false
				}
			}
			if scalars {
				parts := make([]string, len(x))
				for i, c := range x {
					parts[i] = leaf(c)
				}
				out[prefix] = "[" + strings.Join(parts, ", ") + "]"
				return
			}
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		case nil:
		default:
			out[prefix] = leaf(x)
		}
	}
	walk("", tree)
	return out
}

func leaf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
