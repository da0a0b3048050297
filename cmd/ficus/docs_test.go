package main

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// leaves returns every runnable, listed command of the tree under c by its path ("ficus serve
// facade"), with the flags -h prints for it: "-name VALUE" (or "-name" for a switch).
func leaves(c *command, path string, out map[string][]string) {
	if c.hidden {
		return
	}
	if path == "" {
		path = c.name
	} else {
		path += " " + c.name
	}
	if len(c.subs) > 0 {
		for _, s := range c.subs {
			leaves(s, path, out)
		}
		return
	}
	var flags []string
	c.flagSet(path).VisitAll(func(f *flag.Flag) {
		name, _ := flag.UnquoteUsage(f)
		if name == strings.ToLower(name) {
			name = strings.ToUpper(name)
		}
		s := "-" + f.Name
		if name != "" {
			s += " " + name
		}
		flags = append(flags, s)
	})
	slices.Sort(flags)
	out[path] = flags
}

var (
	tableCommand = regexp.MustCompile("^\\| `(ficus [^`]*)` \\| ([^|]*) \\|")
	tableFlag    = regexp.MustCompile("`(-[^`]+)`")
	// argWord is a positional argument in a documented usage: upper case (ID|SEQ) or a
	// bracketed optional part.
	argWord = regexp.MustCompile(`^([A-Z][A-Z|\\_-]*|\[.*)$`)
)

// TestReadmeCommandTableMatchesHelp: the README's command table lists every command that
// `ficus -h` lists, each with exactly the flags its -h prints (names and value placeholders),
// and nothing else.
func TestReadmeCommandTableMatchesHelp(t *testing.T) {
	want := map[string][]string{}
	leaves(rootCommand(), "", want)

	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := tableCommand.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var flags []string
		for _, fm := range tableFlag.FindAllStringSubmatch(m[2], -1) {
			flags = append(flags, fm[1])
		}
		slices.Sort(flags)
		for _, path := range expand(rootCommand(), strings.Fields(m[1])[1:], "ficus") {
			if _, dup := documented[path]; dup {
				t.Errorf("README lists %q twice", path)
			}
			documented[path] = flags
		}
	}
	if len(documented) == 0 {
		t.Fatal("found no command table in README.md")
	}
	for path, flags := range want {
		got, ok := documented[path]
		if !ok {
			t.Errorf("README's command table lacks %q (flags %v)", path, flags)
			continue
		}
		if !slices.Equal(got, flags) {
			t.Errorf("README documents %q with flags %v; its -h prints %v", path, got, flags)
		}
	}
	for path := range documented {
		if _, ok := want[path]; !ok {
			t.Errorf("README's command table lists %q, which `ficus -h` does not", path)
		}
	}
}

// expand turns the words of a documented command line after "ficus" into the command paths
// it stands for: a placeholder that names a group's argument ("CAPABILITY" in `ficus migrate
// CAPABILITY backfill`) stands for each of the group's subcommands; any other placeholder or
// option ends the path.
func expand(c *command, words []string, path string) []string {
	if len(words) == 0 || argWord.MatchString(words[0]) && (len(c.subs) == 0 || words[0] != c.args) {
		return []string{path}
	}
	if words[0] == c.args && len(c.subs) > 0 {
		var out []string
		for _, s := range c.subs {
			if !s.hidden {
				out = append(out, expand(s, words[1:], path+" "+s.name)...)
			}
		}
		return out
	}
	if s := c.find(words[0]); s != nil {
		return expand(s, words[1:], path+" "+s.name)
	}
	return []string{path + " " + strings.Join(words, " ")}
}

// ficusMention is a ficus command line in code: `ficus WORD …` in a code span or block.
var ficusMention = regexp.MustCompile("(?:^|[`$\\s/])ficus((?: [a-z][a-z-]*)+)")

// TestDocsNameOnlyCommandsThatExist: every `ficus COMMAND …` written in code in README.md,
// docs/ and the packages' READMEs names a command of the tree (a group or a leaf), so a page
// cannot promise a command that does not exist.
func TestDocsNameOnlyCommandsThatExist(t *testing.T) {
	known := map[string]bool{}
	var walk func(c *command, path string)
	walk = func(c *command, path string) {
		if path != "" {
			path += " "
		}
		path += c.name
		known[path] = true
		for _, s := range c.subs {
			walk(s, path)
		}
	}
	walk(rootCommand(), "")
	known["ficus help"] = true

	pages, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join("..", "..", "README.md"))
	more, _ := filepath.Glob(filepath.Join("..", "..", "*", "README.md"))
	pages = append(pages, more...)
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		inBlock := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inBlock = !inBlock
				continue
			}
			var code []string
			if inBlock {
				code = []string{line}
			} else {
				parts := strings.Split(line, "`")
				for j := 1; j < len(parts); j += 2 {
					code = append(code, parts[j])
				}
			}
			for _, c := range code {
				for _, m := range ficusMention.FindAllStringSubmatch(c, -1) {
					words := strings.Fields(m[1])
					// The longest prefix of the words that names a command must reach a
					// leaf, or stop at a group followed by nothing more.
					path, matched := "ficus", 0
					for _, w := range words {
						if !known[path+" "+w] {
							break
						}
						path += " " + w
						matched++
					}
					if matched == 0 {
						t.Errorf("%s:%d: `ficus %s` names no ficus command", filepath.Base(page), i+1, words[0])
					}
				}
			}
		}
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`^#{1,6} (.+)$`)
)

// slug is GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ' || r == '-':
			b.WriteRune('-')
		case r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocsLinkOnlyToTheRepository: every relative link in README.md, docs/ and the packages'
// READMEs leads to a file the repository holds (and, with #anchor, to one of its headings),
// and no page points outside the repository by a relative path.
func TestDocsLinkOnlyToTheRepository(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	more, _ := filepath.Glob(filepath.Join(root, "*", "README.md"))
	pages = append(pages, more...)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			if m := mdHeading.FindStringSubmatch(line); m != nil {
				a[slug(strings.ReplaceAll(m[1], "`", ""))] = true
			}
		}
		anchors[path] = a
		return a
	}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		if strings.Contains(string(b), "../shared") {
			t.Errorf("%s points outside the repository (../shared)", rel)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if r, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s links to %s, outside the repository", rel, target)
				continue
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which the repository does not hold", rel, target)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[anchor] {
				t.Errorf("%s links to %s, but %s has no heading #%s", rel, target, filepath.Base(path), anchor)
			}
		}
	}
}
