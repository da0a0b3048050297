package compare

import (
	"fmt"
	"regexp"
	"time"
)

// Value classes a ValueRule can name.
const (
	// ClassRFC3339 is a timestamp in RFC 3339 form, fractional seconds allowed.
	ClassRFC3339 = "rfc3339"
	// ClassUUID is a UUID in its 36-character text form, any version.
	ClassUUID = "uuid"
)

// uuidPattern finds UUIDs in text (8-4-4-4-12 hex digits).
const uuidPattern = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`

// ValueRule picks scalar values by where they are and what they look like. Its zero value
// is invalid: a rule needs At, Class or Regexp.
type ValueRule struct {
	// At is a JSON pointer pattern (see Rules.Ignore) limiting the rule to body values there.
	// Empty means every body value and every compared header.
	At string `json:"at,omitempty" yaml:"at,omitempty"`
	// Class is a built-in kind of value, ClassRFC3339 or ClassUUID. Empty means none.
	Class string `json:"class,omitempty" yaml:"class,omitempty"`
	// Regexp is an RE2 pattern. In an equivalence a value must match it (it is not anchored:
	// write ^…$ to match whole values); in a capture each match is one id, or its first
	// group when it has groups. Empty means none.
	Regexp string `json:"regexp,omitempty" yaml:"regexp,omitempty"`
}

// valueRule is a compiled ValueRule.
type valueRule struct {
	at    *pattern
	class string
	re    *regexp.Regexp // Regexp, or the UUID finder for ClassUUID
	group bool           // re has a group to take the id from
}

func compileValueRule(r ValueRule, capture bool) (valueRule, error) {
	var out valueRule
	if r.At == "" && r.Class == "" && r.Regexp == "" {
		return out, fmt.Errorf("value rule: needs at, class or regexp")
	}
	if !capture && r.Class == "" && r.Regexp == "" {
		return out, fmt.Errorf("value rule at %q: an equivalence needs a class or a regexp (to ignore a field, use ignore)", r.At)
	}
	if r.At != "" {
		p, err := compilePattern(r.At)
		if err != nil {
			return out, fmt.Errorf("value rule: %w", err)
		}
		out.at = &p
	}
	switch r.Class {
	case "":
	case ClassRFC3339:
		if capture {
			return out, fmt.Errorf("value rule: class %s describes noise, not ids: use it in an equivalence", r.Class)
		}
		out.class = r.Class
	case ClassUUID:
		out.class = r.Class
		out.re = regexp.MustCompile(uuidPattern) // a constant pattern: cannot fail
	default:
		return out, fmt.Errorf("value rule: unknown class %q (want %s or %s)", r.Class, ClassRFC3339, ClassUUID)
	}
	if r.Regexp != "" {
		if r.Class != "" {
			return out, fmt.Errorf("value rule: give a class or a regexp, not both")
		}
		re, err := regexp.Compile(r.Regexp)
		if err != nil {
			return out, fmt.Errorf("value rule: %w", err)
		}
		out.re, out.group = re, re.NumSubexp() > 0
	}
	return out, nil
}

// applies says whether the rule looks at the value at ptr (header values have no pointer).
func (r *valueRule) applies(ptr []byte, header bool) bool {
	if r.at == nil {
		return true
	}
	return !header && r.at.match(ptr)
}

// matches says whether a whole value belongs to the rule's class or matches its regexp.
func (r *valueRule) matches(v []byte) bool {
	switch r.class {
	case ClassRFC3339:
		if len(v) < len("2006-01-02T15:04:05Z") {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, string(v))
		return err == nil
	case ClassUUID:
		loc := r.re.FindIndex(v)
		return loc != nil && loc[0] == 0 && loc[1] == len(v)
	}
	return r.re.Match(v)
}

// spans returns where the ids are in v: the whole value when the rule only says where, else
// every match of its pattern (or of the pattern's first group).
func (r *valueRule) spans(v []byte) [][2]int {
	if r.re == nil {
		return [][2]int{{0, len(v)}}
	}
	if r.class == ClassUUID && len(v) < 36 {
		return nil // too short to hold one: skip the regexp
	}
	var out [][2]int
	for _, m := range r.re.FindAllSubmatchIndex(v, -1) {
		if r.group {
			if m[2] >= 0 {
				out = append(out, [2]int{m[2], m[3]})
			}
			continue
		}
		out = append(out, [2]int{m[0], m[1]})
	}
	return out
}
