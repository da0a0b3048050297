package scenario

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// expand replaces each ${name} in s with its value in vars, and ${repeat:N:text} with text
// N times (for oversized bodies).
func expand(s string, vars map[string]string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("%q: ${ without }", s)
		}
		b.WriteString(s[:i])
		ref := s[i+2 : i+j]
		s = s[i+j+1:]
		if rest, ok := strings.CutPrefix(ref, "repeat:"); ok {
			text, err := repeat(rest)
			if err != nil {
				return "", err
			}
			b.WriteString(text)
			continue
		}
		v, ok := vars[ref]
		if !ok {
			return "", fmt.Errorf("${%s} is not defined", ref)
		}
		b.WriteString(v)
	}
}

func repeat(arg string) (string, error) {
	count, text, err := parseRepeat(arg)
	if err != nil {
		return "", err
	}
	return strings.Repeat(text, count), nil
}

func parseRepeat(arg string) (int, string, error) {
	n, text, ok := strings.Cut(arg, ":")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 0 || text == "" || count > MaxRepeat/len(text) {
		return 0, "", fmt.Errorf("${repeat:%s}: want ${repeat:N:text} with text×N at most %d bytes", arg, MaxRepeat)
	}
	return count, text, nil
}

// checkTemplate fails when s refers to a variable that is not in scope, or is malformed.
func checkTemplate(s string, scope map[string]bool) error {
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return fmt.Errorf("%q: ${ without }", s)
		}
		ref := s[i+2 : i+j]
		if rest, ok := strings.CutPrefix(ref, "repeat:"); ok {
			if _, _, err := parseRepeat(rest); err != nil {
				return err
			}
		} else if !scope[ref] {
			return fmt.Errorf("${%s} is not defined (by vars or an earlier capture)", ref)
		}
		s = s[i+j+1:]
	}
}

// toJSON writes a YAML value as JSON, expanding ${name} in strings (keys included).
// Integers and floats keep their digits, so large cents survive exactly.
func toJSON(n *yaml.Node, vars map[string]string) ([]byte, error) {
	var b []byte
	err := appendJSON(&b, n, vars)
	return b, err
}

func appendJSON(b *[]byte, n *yaml.Node, vars map[string]string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			*b = append(*b, "null"...)
			return nil
		}
		return appendJSON(b, n.Content[0], vars)
	case yaml.AliasNode:
		return appendJSON(b, n.Alias, vars)
	case yaml.MappingNode:
		*b = append(*b, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				*b = append(*b, ',')
			}
			k, err := expand(n.Content[i].Value, vars)
			if err != nil {
				return err
			}
			*b = appendString(*b, k)
			*b = append(*b, ':')
			if err := appendJSON(b, n.Content[i+1], vars); err != nil {
				return err
			}
		}
		*b = append(*b, '}')
		return nil
	case yaml.SequenceNode:
		*b = append(*b, '[')
		for i, c := range n.Content {
			if i > 0 {
				*b = append(*b, ',')
			}
			if err := appendJSON(b, c, vars); err != nil {
				return err
			}
		}
		*b = append(*b, ']')
		return nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			*b = append(*b, "null"...)
		case "!!bool":
			v, err := strconv.ParseBool(n.Value)
			if err != nil {
				return fmt.Errorf("line %d: %q is not a boolean", n.Line, n.Value)
			}
			*b = strconv.AppendBool(*b, v)
		case "!!int":
			v, ok := new(big.Int).SetString(strings.ReplaceAll(n.Value, "_", ""), 0)
			if !ok {
				return fmt.Errorf("line %d: %q is not an integer", n.Line, n.Value)
			}
			*b = v.Append(*b, 10)
		case "!!float":
			if !json.Valid([]byte(n.Value)) {
				return fmt.Errorf("line %d: %q is not a JSON number", n.Line, n.Value)
			}
			*b = append(*b, n.Value...)
		default:
			s, err := expand(n.Value, vars)
			if err != nil {
				return err
			}
			*b = appendString(*b, s)
		}
		return nil
	}
	return fmt.Errorf("line %d: unsupported YAML value", n.Line)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
