package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file reads docs/walkthrough.md into the steps TestWalkthrough runs. The markers it
// relies on are described at the top of the walkthrough itself (an HTML comment), so that
// whoever edits the page knows what the test reads:
//
//   - a ```sh block holds commands, one a logical line (a line ending in \ continues on the
//     next); comments and blank lines are skipped;
//   - a ```diff block is an edit of config.yaml: hunks of context (" "), removed ("-") and
//     added ("+") lines, each hunk introduced by "@@"; a hunk must match exactly one place of
//     the file as the previous steps left it;
//   - a ```text expect block is an excerpt of the output of the ```sh block before it, with
//     options: exit=N (the status of the block's last command; every other command must
//     exit 0), retry=DURATION (run the block again until the excerpt matches, for that long
//     at most), from=up (match ficus up's output instead of the block's).

// walkBlock is one fenced block of the walkthrough that the test acts on.
type walkBlock struct {
	kind string // "sh", "diff" or "expect"
	line int    // the line of the opening fence, 1-based
	body []string
	// expect options
	exit   int
	retry  time.Duration
	fromUp bool
}

// walkStep is a ```sh block with what the document says about it: the config edits before
// it and the output excerpts after it.
type walkStep struct {
	heading string
	diffs   []walkBlock
	sh      walkBlock
	expects []walkBlock
}

var walkFence = regexp.MustCompile("^```([a-z]*)(.*)$")

// parseWalkthrough splits the walkthrough into steps. It fails on a block it cannot place:
// an excerpt with no command before it, an unknown option, an unclosed fence.
func parseWalkthrough(doc string) ([]walkStep, error) {
	var steps []walkStep
	var pendingDiffs []walkBlock
	heading := ""
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "### ") {
			heading = strings.TrimLeft(line, "# ")
			continue
		}
		m := walkFence.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b := walkBlock{kind: m[1], line: i + 1}
		opts := strings.Fields(m[2])
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b.body = append(b.body, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("walkthrough.md:%d: the fence is never closed", b.line)
		}
		switch {
		case b.kind == "sh":
			steps = append(steps, walkStep{heading: heading, diffs: pendingDiffs, sh: b})
			pendingDiffs = nil
		case b.kind == "diff":
			pendingDiffs = append(pendingDiffs, b)
		case b.kind == "text" && len(opts) > 0 && opts[0] == "expect":
			b.kind = "expect"
			for _, o := range opts[1:] {
				k, v, _ := strings.Cut(o, "=")
				var err error
				switch k {
				case "exit":
					b.exit, err = strconv.Atoi(v)
				case "retry":
					b.retry, err = time.ParseDuration(v)
				case "from":
					if v != "up" {
						err = fmt.Errorf("from=%s: only from=up is known", v)
					}
					b.fromUp = true
				default:
					err = fmt.Errorf("unknown option %q", o)
				}
				if err != nil {
					return nil, fmt.Errorf("walkthrough.md:%d: %v", b.line, err)
				}
			}
			if len(steps) == 0 || len(pendingDiffs) > 0 {
				return nil, fmt.Errorf("walkthrough.md:%d: an expected output needs a ```sh block right before it", b.line)
			}
			steps[len(steps)-1].expects = append(steps[len(steps)-1].expects, b)
		}
	}
	if len(pendingDiffs) > 0 {
		return nil, fmt.Errorf("walkthrough.md:%d: a config edit with no command after it", pendingDiffs[0].line)
	}
	return steps, nil
}

// commands splits a ```sh block into its commands: logical lines, comments and blank lines
// left out.
func (b walkBlock) commands() []string {
	var out []string
	cur := ""
	for _, l := range b.body {
		t := strings.TrimSpace(l)
		if cur == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if c, ok := strings.CutSuffix(t, "\\"); ok {
			cur += strings.TrimSpace(c) + " "
			continue
		}
		out = append(out, cur+t)
		cur = ""
	}
	if cur != "" {
		out = append(out, strings.TrimSpace(cur))
	}
	return out
}

// applyDiff applies a ```diff block's hunks to text, each at the one place its old lines
// (context and "-") match; it fails naming the hunk that matches nowhere or in several places.
func applyDiff(text string, d walkBlock) (string, error) {
	var hunks [][]string
	for _, l := range d.body {
		if strings.HasPrefix(l, "@@") {
			hunks = append(hunks, nil)
			continue
		}
		if len(hunks) == 0 {
			if strings.HasPrefix(l, "---") || strings.HasPrefix(l, "+++") || strings.TrimSpace(l) == "" {
				continue // file headers
			}
			return "", fmt.Errorf("walkthrough.md:%d: diff line %q comes before the first @@", d.line, l)
		}
		hunks[len(hunks)-1] = append(hunks[len(hunks)-1], l)
	}
	if len(hunks) == 0 {
		return "", fmt.Errorf("walkthrough.md:%d: the diff has no hunk (@@)", d.line)
	}
	lines := strings.Split(text, "\n")
	for n, h := range hunks {
		var old, repl []string
		for _, l := range h {
			if l == "" {
				l = " " // an empty context line, its space trimmed by an editor
			}
			switch l[0] {
			case ' ':
				old, repl = append(old, l[1:]), append(repl, l[1:])
			case '-':
				old = append(old, l[1:])
			case '+':
				repl = append(repl, l[1:])
			default:
				return "", fmt.Errorf("walkthrough.md:%d: hunk %d: line %q starts with neither ' ', '-' nor '+'", d.line, n+1, l)
			}
		}
		var at []int
		for i := 0; i+len(old) <= len(lines); i++ {
			match := true
			for j := range old {
				if strings.TrimRight(lines[i+j], " ") != strings.TrimRight(old[j], " ") {
					match = false
					break
				}
			}
			if match {
				at = append(at, i)
			}
		}
		if len(at) != 1 {
			return "", fmt.Errorf("walkthrough.md:%d: hunk %d does not apply to config.yaml: its %d old lines match %d places, not one:\n%s",
				d.line, n+1, len(old), len(at), strings.Join(old, "\n"))
		}
		i := at[0]
		lines = append(lines[:i:i], append(repl, lines[i+len(old):]...)...)
	}
	return strings.Join(lines, "\n"), nil
}

// matchExcerpt reports whether every non-blank line of the excerpt is found in output, in
// order, each matching one whole output line. Runs of spaces count as one space and the
// ends of lines are trimmed; "…" stands for any text within a line, and a line that is
// only "…" for any lines. It returns the first excerpt line it could not find.
func matchExcerpt(excerpt []string, output string) (bool, string) {
	out := strings.Split(output, "\n")
	for i := range out {
		out[i] = normalizeSpace(out[i])
	}
	pos := 0
	for _, e := range excerpt {
		e = normalizeSpace(e)
		if e == "" || e == "…" {
			continue
		}
		re := excerptLine(e)
		found := false
		for ; pos < len(out); pos++ {
			if re.MatchString(out[pos]) {
				found, pos = true, pos+1
				break
			}
		}
		if !found {
			return false, e
		}
	}
	return true, ""
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func excerptLine(e string) *regexp.Regexp {
	parts := strings.Split(e, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}
