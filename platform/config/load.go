package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file, located as precisely as the file allows.
type Problem struct {
	File   string
	Line   int
	Column int
	// Field is the dotted path of the offending field, as in "routes[2].to".
	Field string
	Msg   string
}

// Error formats p as "file:line:col: field: message", the form editors jump to.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in one config file.
type Error struct {
	Problems []Problem
}

// Error lists the problems, one a line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// pos is where a field stands in the file.
type pos struct{ line, col int }

// parser carries what one Parse call learns about the file.
type parser struct {
	file     string
	problems []Problem
	// at maps a field path ("routes[0].to") to the position of its key or item.
	at map[string]pos
	// broken holds the paths whose values could not be decoded, so validation does not
	// report them a second time.
	broken map[string]bool
	// empty holds the paths written with no value or an empty string ("listen: ''"), which
	// decode like a key left out; validation refuses that where it would hide a mistake.
	empty map[string]bool
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// Parse validates data, the contents of the file at path, and returns the defaulted config.
// A non-nil error is an *Error listing every problem found.
func Parse(path string, data []byte) (*Config, error) {
	p := &parser{file: path, at: map[string]pos{}, broken: map[string]bool{}, empty: map[string]bool{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := 0
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = yamlLine.ReplaceAllString(msg, "")
		msg = strings.TrimLeft(msg, ": ")
		return nil, &Error{Problems: []Problem{{File: path, Line: line, Msg: "YAML syntax: " + msg}}}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &Error{Problems: []Problem{{File: path, Msg: "the file is empty"}}}
	}
	doc := root.Content[0]
	var cfg Config
	p.walk(doc, reflect.TypeOf(cfg), "")
	// Decoding goes on past type errors; those were already reported, field by field, by walk.
	if err := doc.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.add("", fmt.Sprintf("decoding: %v", err))
		} else if len(p.problems) == 0 {
			for _, e := range te.Errors {
				p.add("", e)
			}
		}
	}
	cfg.Path = path
	cfg.setDefaults()
	p.validate(&cfg)
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool {
			a, b := p.problems[i], p.problems[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		return nil, &Error{Problems: p.problems}
	}
	return &cfg, nil
}

// add records a problem at field, located by the position walk recorded for it (or its
// nearest recorded parent).
func (p *parser) add(field, msg string) {
	pr := Problem{File: p.file, Field: field, Msg: msg}
	for f := field; ; {
		if at, ok := p.at[f]; ok {
			pr.Line, pr.Column = at.line, at.col
			break
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	p.problems = append(p.problems, pr)
}

func (p *parser) addAt(n *yaml.Node, field, msg string) {
	p.problems = append(p.problems, Problem{File: p.file, Line: n.Line, Column: n.Column, Field: field, Msg: msg})
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walk checks node against the Go type t it will decode into: unknown and duplicate fields,
// wrong kinds, and scalars that do not parse. It records every field's position.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Tag == "!!str" && n.Value == "") {
		p.empty[path] = true
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || isScalar(t.Kind()) {
		if n.Kind != yaml.ScalarNode {
			p.addAt(n, path, "expects a single value, not a "+kindName(n.Kind))
			p.broken[path] = true
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := err.Error()
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				msg = te.Errors[0]
			}
			msg = strings.TrimPrefix(yamlLine.ReplaceAllString(msg, ""), ": ")
			if strings.HasPrefix(msg, "cannot unmarshal") {
				msg = fmt.Sprintf("expects %s, got %q", typeName(t), n.Value)
			}
			p.addAt(n, path, msg)
			p.broken[path] = true
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.addAt(n, path, "expects a mapping of fields, not a "+kindName(n.Kind))
			p.broken[path] = true
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			if seen[k.Value] {
				p.addAt(k, fp, "duplicate field")
				continue
			}
			seen[k.Value] = true
			p.at[fp] = pos{k.Line, k.Column}
			f, ok := fields[k.Value]
			if !ok {
				p.addAt(k, fp, fmt.Sprintf("unknown field %q (known: %s)", k.Value, strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			p.walk(v, f.Type, fp)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			p.addAt(n, path, "expects a mapping, not a "+kindName(n.Kind))
			p.broken[path] = true
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			if seen[k.Value] {
				p.addAt(k, fp, "duplicate key")
				continue
			}
			seen[k.Value] = true
			p.at[fp] = pos{k.Line, k.Column}
			p.walk(v, t.Elem(), fp)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.addAt(n, path, "expects a list, not a "+kindName(n.Kind))
			p.broken[path] = true
			return
		}
		for i, item := range n.Content {
			fp := fmt.Sprintf("%s[%d]", path, i)
			p.at[fp] = pos{item.Line, item.Column}
			p.walk(item, t.Elem(), fp)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isScalar(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	}
	return false
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a string"
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
