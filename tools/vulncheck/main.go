// Command vulncheck runs govulncheck over the module against a vulnerability database built
// offline, and fails when the code calls a vulnerable symbol that the ignore file does not
// excuse. `make lint` runs it.
//
// The database comes through the Go module proxy like any dependency: the golang.org/x/vulndb
// module's zip holds the OSV records (data/osv/*.json), and that module's own indexdb command
// turns them into the v1 layout govulncheck reads with -db file:///DIR (index/db.json,
// index/modules.json, ID/<id>.json). The layout is built once per vulndb version, under -dir.
// Nothing is fetched from vuln.go.dev.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
)

// Versions of the tool and the data. Raise vulndbVersion (a pseudo-version of
// golang.org/x/vulndb the module proxy serves) to take newer advisories.
const (
	govulncheck   = "golang.org/x/vuln/cmd/govulncheck@v1.9.0"
	vulndbModule  = "golang.org/x/vulndb"
	vulndbVersion = "v0.0.0-20261105234957-e22db6528018"
	indexdb       = vulndbModule + "/cmd/indexdb@" + vulndbVersion
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vulncheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "bin/vulndb", "`DIR` under which the database is built, one subdirectory per vulndb version")
	ignorePath := fs.String("ignore", ".ci/vulncheck-ignore", "`FILE` of advisories to excuse, one per line: ID and the reason")
	goCmd := fs.String("go", "go", "the go `COMMAND`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	patterns := fs.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	ignore, err := readIgnore(*ignorePath)
	if err != nil {
		return err
	}
	db, err := buildDB(ctx, *goCmd, filepath.Join(*dir, vulndbVersion), stderr)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(db)
	if err != nil {
		return fmt.Errorf("locating the vulnerability database: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, *goCmd, append([]string{"run", govulncheck, "-db", "file://" + filepath.ToSlash(abs), "-format", "json"}, patterns...)...)
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Run(); err != nil {
		// In JSON mode govulncheck exits 0 whatever it finds; an error is a failed scan.
		return fmt.Errorf("running govulncheck: %w", err)
	}
	rep, err := parseReport(&out)
	if err != nil {
		return err
	}
	return rep.judge(ignore, vulndbVersion, stdout)
}

// buildDB makes the v1 database layout in dir from the vulndb module's OSV records, unless
// dir already holds it, and returns dir.
func buildDB(ctx context.Context, goCmd, dir string, stderr io.Writer) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "index", "db.json")); err == nil {
		return dir, nil
	}
	var dl bytes.Buffer
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", vulndbModule+"@"+vulndbVersion)
	cmd.Stdout, cmd.Stderr = &dl, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("downloading %s@%s from the module proxy: %w", vulndbModule, vulndbVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(dl.Bytes(), &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("downloading %s@%s: no module directory in %q (%v) %s", vulndbModule, vulndbVersion, dl.String(), err, mod.Error)
	}
	osv := filepath.Join(mod.Dir, "data", "osv")
	if _, err := os.Stat(osv); err != nil {
		return "", fmt.Errorf("the %s module holds no OSV records: %w", vulndbModule, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("building the vulnerability database: %w", err)
	}
	// indexdb writes into a fresh directory, renamed into place when whole, so a build
	// interrupted half way is never taken for a database.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return "", fmt.Errorf("building the vulnerability database: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "db")
	fmt.Fprintf(stderr, "vulncheck: building the vulnerability database from %s@%s (once per version)\n", vulndbModule, vulndbVersion)
	cmd = exec.CommandContext(ctx, goCmd, "run", indexdb, "-vulns", osv, "-out", out)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the vulnerability database with %s: %w", indexdb, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return "", fmt.Errorf("building the vulnerability database: %w", err)
	}
	return dir, nil
}

// readIgnore reads the ignore file: per line an advisory ID and, after it, why it does not
// apply; # starts a comment. An entry without a reason is an error, so that every excuse is
// written down. A missing file excuses nothing.
func readIgnore(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ignore file: %w", err)
	}
	defer f.Close()
	return parseIgnore(f, path)
}

func parseIgnore(r io.Reader, name string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		id, reason, _ := strings.Cut(strings.TrimSpace(line), " ")
		reason = strings.TrimSpace(reason)
		switch {
		case id == "":
			continue
		case !strings.HasPrefix(id, "GO-"):
			errs = append(errs, fmt.Errorf("%s:%d: %q is not an advisory ID (GO-YYYY-NNNN)", name, n, id))
		case reason == "":
			errs = append(errs, fmt.Errorf("%s:%d: %s has no reason: say why it does not apply", name, n, id))
		default:
			out[id] = reason
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reading %s: %w", name, err))
	}
	return out, errors.Join(errs...)
}

// report is what a govulncheck JSON stream says.
type report struct {
	goVersion string
	summaries map[string]string // advisory ID → summary
	called    map[string]string // advisory ID → the fixed version ("" when none)
	imported  map[string]bool   // found, but not called
}

// parseReport reads govulncheck's -format json stream: a sequence of JSON objects, each one
// message (config, SBOM, progress, osv, finding).
func parseReport(r io.Reader) (*report, error) {
	rep := &report{summaries: map[string]string{}, called: map[string]string{}, imported: map[string]bool{}}
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Config *struct {
				GoVersion string `json:"go_version"`
			} `json:"config"`
			OSV *struct {
				ID      string `json:"id"`
				Summary string `json:"summary"`
			} `json:"osv"`
			Finding *struct {
				OSV          string `json:"osv"`
				FixedVersion string `json:"fixed_version"`
				Trace        []struct {
					Function string `json:"function"`
				} `json:"trace"`
			} `json:"finding"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return rep, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading govulncheck's report: %w", err)
		}
		switch {
		case msg.Config != nil:
			rep.goVersion = msg.Config.GoVersion
		case msg.OSV != nil:
			rep.summaries[msg.OSV.ID] = msg.OSV.Summary
		case msg.Finding != nil:
			// A finding whose innermost frame names a function is at symbol level: the
			// code reaches the vulnerable symbol.
			if f := msg.Finding; len(f.Trace) > 0 && f.Trace[0].Function != "" {
				rep.called[f.OSV] = f.FixedVersion
			} else {
				rep.imported[f.OSV] = true
			}
		}
	}
}

// judge prints the called advisories, each excused or not, and fails when one is not.
func (rep *report) judge(ignore map[string]string, dbVersion string, w io.Writer) error {
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range rep.called {
			if !yield(id) {
				return
			}
		}
	})
	var failing []string
	for _, id := range ids {
		fixed := rep.called[id]
		if fixed == "" {
			fixed = "none"
		}
		if reason, ok := ignore[id]; ok {
			fmt.Fprintf(w, "excused  %s  %s (fixed in: %s)\n          %s\n", id, rep.summaries[id], fixed, reason)
			continue
		}
		failing = append(failing, id)
		fmt.Fprintf(w, "CALLED   %s  %s (fixed in: %s)\n", id, rep.summaries[id], fixed)
	}
	for id := range ignore {
		if _, ok := rep.called[id]; !ok {
			fmt.Fprintf(w, "note: %s is in the ignore file but not called by the packages scanned: remove it if the whole module no longer calls it\n", id)
		}
	}
	uncalled := 0
	for id := range rep.imported {
		if _, ok := rep.called[id]; !ok {
			uncalled++
		}
	}
	fmt.Fprintf(w, "govulncheck (vulndb %s, %s): %d advisories called, %d excused; %d more in dependencies but not called\n",
		dbVersion, rep.goVersion, len(ids), len(ids)-len(failing), uncalled)
	if len(failing) > 0 {
		return fmt.Errorf("the code calls %d vulnerable symbols: %s (details: go run %s -db file://DB ./...)",
			len(failing), strings.Join(failing, ", "), govulncheck)
	}
	return nil
}
