package config_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const rollbackNote = "rolled back 2025-03-01T10:00:00Z by facade 127.0.0.1:8080 pid 42: gate error_rate failed: 30 errors in 100 requests"

// judged returns route name of the config file data, as a facade that loaded it holds it.
func judged(t *testing.T, data []byte, name string) config.Route {
	t.Helper()
	cfg, err := config.Parse("config.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	i, err := config.FindRoute(cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Routes[i]
}

// TestRollBackRouteGolden: the canary's percent goes to 0 with the note on its line (or just
// above, when the line has a comment of its own); every other byte of the file stays, as
// the golden files show, and the file says exactly that once parsed.
func TestRollBackRouteGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/rollback/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			before := judged(t, data, "inventory-reads")
			out, err := config.RollBackRoute("config.yaml", data, before, rollbackNote)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestRollBackRouteGolden -update writes it)", err)
			}
			if string(out) != string(want) {
				t.Errorf("got:\n%s\nwant (%s):\n%s", out, golden, want)
			}
			// Every comment of the input is still there, and the note once.
			for _, line := range strings.Split(string(data), "\n") {
				if i := strings.Index(line, "#"); i >= 0 && !strings.Contains(string(out), line[i:]) {
					t.Errorf("comment %q lost", line[i:])
				}
			}
			if n := strings.Count(string(out), rollbackNote); n != 1 {
				t.Errorf("the note is there %d times", n)
			}
			after := judged(t, out, "inventory-reads")
			if after.Canary == nil || after.Canary.Percent != 0 || after.Canary.To != before.Canary.To || after.Canary.Sticky != before.Canary.Sticky {
				t.Errorf("canary after the rollback: %+v", after.Canary)
			}
			// Idempotent: the rolled-back file is not rolled back again.
			if _, err := config.RollBackRoute("config.yaml", out, before, rollbackNote); !errors.Is(err, config.ErrAlreadyRolledBack) {
				t.Errorf("a second rollback: %v, want ErrAlreadyRolledBack", err)
			}
		})
	}
}

// TestRollBackRouteRefusesAChangedRoute: the rollback was judged on one version of the
// route; any other version in the file (an operator's edit since) wins, and nothing is
// written.
func TestRollBackRouteRefusesAChangedRoute(t *testing.T) {
	data, err := os.ReadFile("testdata/rollback/flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before := judged(t, data, "inventory-reads")
	for name, edit := range map[string][2]string{
		"percent raised":  {"percent: 10", "percent: 50"},
		"canary lowered":  {"percent: 10", "percent: 0"}, // also at 0, but not as judged: not "already"
		"gates changed":   {"min_samples: 50", "min_samples: 60"},
		"route renamed":   {"name: inventory-reads", "name: inventory"},
		"canary removed":  {"    canary: { to: inventory, percent: 10, sticky: header:X-Customer-ID }\n", ""},
		"methods changed": {"methods: [GET, HEAD]", "methods: [GET]"},
	} {
		t.Run(name, func(t *testing.T) {
			changed := strings.Replace(string(data), edit[0], edit[1], 1)
			if changed == string(data) {
				t.Fatal("the edit changed nothing")
			}
			out, err := config.RollBackRoute("config.yaml", []byte(changed), before, rollbackNote)
			if name == "canary lowered" {
				// The same route with its canary at 0 and the sticky kept: already rolled back.
				if !errors.Is(err, config.ErrAlreadyRolledBack) {
					t.Fatalf("got %v, want ErrAlreadyRolledBack", err)
				}
				return
			}
			if !errors.Is(err, config.ErrRouteChanged) || out != nil {
				t.Fatalf("got %v (%d bytes), want ErrRouteChanged", err, len(out))
			}
		})
	}
	// A file that no longer parses is not written to either.
	if _, err := config.RollBackRoute("config.yaml", []byte("routes: [\n"), before, rollbackNote); err == nil {
		t.Fatal("rolled back a broken file")
	}
}

// writeTemp writes data to config.yaml in a new directory, with mode perm.
func writeTemp(t *testing.T, data []byte, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// TestRollBackFileKeepsModeAndWritesOnce: the file is replaced with its mode kept, and a
// second rollback of the same judgement changes nothing.
func TestRollBackFileKeepsModeAndWritesOnce(t *testing.T) {
	data, err := os.ReadFile("testdata/rollback/block.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, data, 0o640)
	before := judged(t, data, "inventory-reads")
	if err := config.RollBackFile(context.Background(), path, before, rollbackNote); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	want, _ := os.ReadFile("testdata/rollback/block.golden")
	got, _ := os.ReadFile(path)
	if string(got) != string(want) {
		t.Errorf("file after the rollback:\n%s", got)
	}
	if err := config.RollBackFile(context.Background(), path, before, "another note"); !errors.Is(err, config.ErrAlreadyRolledBack) {
		t.Errorf("second rollback: %v, want ErrAlreadyRolledBack", err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(got) {
		t.Error("the second rollback changed the file")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want the config alone (no temporary file left)", len(entries))
	}
}

// TestRollBackFileTwoAtOnce: facades that trip together both try; one writes, the others
// find the canary at 0, and the note is in the file once.
func TestRollBackFileTwoAtOnce(t *testing.T) {
	data, err := os.ReadFile("testdata/rollback/flow-commented.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, data, 0o644)
	before := judged(t, data, "inventory-reads")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = config.RollBackFile(context.Background(), path, before, rollbackNote) })
	}
	wg.Wait()
	wrote := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wrote++
		case !errors.Is(err, config.ErrAlreadyRolledBack):
			t.Errorf("unexpected: %v", err)
		}
	}
	got, _ := os.ReadFile(path)
	if wrote != 1 || strings.Count(string(got), rollbackNote) != 1 {
		t.Errorf("%d writers, the note %d times:\n%s", wrote, strings.Count(string(got), rollbackNote), got)
	}
}

// TestRollBackFileRefusesASymlink: a config file that is a symbolic link (as a mounted
// Kubernetes ConfigMap's) is left alone, and the error says why.
func TestRollBackFileRefusesASymlink(t *testing.T) {
	data, err := os.ReadFile("testdata/rollback/flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	target := writeTemp(t, data, 0o644)
	link := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err = config.RollBackFile(context.Background(), link, judged(t, data, "inventory-reads"), rollbackNote)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("got %v, want a refusal naming the symbolic link", err)
	}
	if got, _ := os.ReadFile(target); string(got) != string(data) {
		t.Error("the link's target changed")
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced")
	}
}

// TestRollBackFileMissing: a file that is gone is an error, not a new file.
func TestRollBackFileMissing(t *testing.T) {
	data, _ := os.ReadFile("testdata/rollback/flow.yaml")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := config.RollBackFile(context.Background(), path, judged(t, data, "inventory-reads"), rollbackNote); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("a file was created")
	}
}

// TestPromoteAfterRollBack: `ficus promote` on a rolled-back route does not quietly run
// the canary again. Without a shadow it refuses, saying the canary is at 0% and what to do;
// with one it starts over from the shadow stage to the first step, as for a new candidate.
func TestPromoteAfterRollBack(t *testing.T) {
	noShadow, err := os.ReadFile("testdata/rollback/flow.golden")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = config.PromoteRoute("config.yaml", noShadow, "inventory-reads")
	if !errors.Is(err, config.ErrNothingToPromote) || !strings.Contains(err.Error(), "canary to inventory is at 0%") {
		t.Errorf("promoting a rolled-back canary without a shadow: %v", err)
	}
	withShadow, err := os.ReadFile("testdata/rollback/flow-commented.golden")
	if err != nil {
		t.Fatal(err)
	}
	_, step, err := config.PromoteRoute("config.yaml", withShadow, "inventory-reads")
	if err != nil || step.From != "shadow" || step.To != "canary 10%" {
		t.Errorf("promoting a rolled-back canary with a shadow: %+v, %v", step, err)
	}
}
