package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWalkthroughParser: the rules TestWalkthrough reads the page by, each shown to fail when
// the page breaks them.
func TestWalkthroughParser(t *testing.T) {
	doc := "## 1. A step\n\n```diff\n@@\n a: 1\n-b: 2\n+b: 3\n```\n\n```sh\n# a comment\necho one \\\n  two\n\nfalse\n```\n\n```text expect exit=1 retry=2s\none … \n```\n"
	steps, err := parseWalkthrough(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || len(steps[0].diffs) != 1 || len(steps[0].expects) != 1 {
		t.Fatalf("got %+v", steps)
	}
	if got := steps[0].sh.commands(); len(got) != 2 || got[0] != "echo one two" || got[1] != "false" {
		t.Errorf("commands: %q", got)
	}
	if e := steps[0].expects[0]; e.exit != 1 || e.retry.Seconds() != 2 || steps[0].heading != "1. A step" {
		t.Errorf("options: %+v", e)
	}

	edited, err := applyDiff("a: 1\nb: 2\nc: 3", steps[0].diffs[0])
	if err != nil || edited != "a: 1\nb: 3\nc: 3" {
		t.Errorf("applyDiff = %q, %v", edited, err)
	}
	if _, err := applyDiff("a: 1\nb: 4\n", steps[0].diffs[0]); err == nil || !strings.Contains(err.Error(), "does not apply") {
		t.Errorf("a hunk that matches nowhere: %v", err)
	}
	if _, err := applyDiff("a: 1\nb: 2\na: 1\nb: 2\n", steps[0].diffs[0]); err == nil || !strings.Contains(err.Error(), "match 2 places") {
		t.Errorf("a hunk that matches twice: %v", err)
	}

	for _, bad := range []string{
		"```text expect\nx\n```\n",                           // no command before it
		"```sh\ntrue\n```\n```text expect later=1\nx\n```\n", // unknown option
		"```sh\ntrue\n",                                      // unclosed
		"```diff\n@@\n+x\n```\n",                             // an edit with no command after it
	} {
		if _, err := parseWalkthrough(bad); err == nil {
			t.Errorf("parseWalkthrough(%q) took it", bad)
		}
	}

	for _, c := range []struct {
		excerpt, output string
		ok              bool
	}{
		{"a\nc", "a\nb\nc", true},
		{"c\na", "a\nb\nc", false},             // order
		{"x 1  2", "  x   1 2  ", true},        // spaces
		{"id … done", "id 01a2-ff done", true}, // …
		{"id", "id 01a2", false},               // whole lines
		{"a\n…\nc", "a\nb\nc", true},
	} {
		if ok, _ := matchExcerpt(strings.Split(c.excerpt, "\n"), c.output); ok != c.ok {
			t.Errorf("matchExcerpt(%q, %q) = %v", c.excerpt, c.output, ok)
		}
	}
}

// TestStopWithoutUp: ficus stop and ficus start say plainly that no ficus up runs on the
// config, exit 1.
func TestStopWithoutUp(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	upConfig(t, dir, h, "")
	for _, cmd := range []string{"stop", "start"} {
		status, out := runFicus(t, dir, cmd, "monolith")
		if status != 1 || !strings.Contains(out, "no ficus up runs on this config") {
			t.Errorf("ficus %s without ficus up: exit %d, %s", cmd, status, out)
		}
	}
	if status, out := runFicus(t, dir, "stop"); status != 2 || !strings.Contains(out, "takes one COMPONENT") {
		t.Errorf("ficus stop without a component: exit %d, %s", status, out)
	}
}

// runFicus runs the ficus binary in dir and returns its exit status and output.
func runFicus(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(ficusBin, args...)
	cmd.Dir, cmd.Env = dir, walkEnv()
	out, err := cmd.CombinedOutput()
	return exitStatus(err), string(out)
}
