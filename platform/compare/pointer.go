package compare

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// pattern is a compiled JSON pointer pattern: RFC 6901 segments, still escaped, where a
// segment "*" matches any one segment and "**" any number of them (none included).
type pattern struct {
	src  string
	segs []string
}

func compilePattern(src string) (pattern, error) {
	if src == "" {
		return pattern{src: src}, nil // the whole document
	}
	if src[0] != '/' {
		return pattern{}, fmt.Errorf("pointer pattern %q: must be empty or start with /", src)
	}
	segs := strings.Split(src[1:], "/")
	for _, s := range segs {
		for i := 0; i < len(s); i++ {
			if s[i] == '~' && (i+1 == len(s) || (s[i+1] != '0' && s[i+1] != '1')) {
				return pattern{}, fmt.Errorf("pointer pattern %q: ~ must be followed by 0 or 1", src)
			}
		}
	}
	return pattern{src: src, segs: segs}, nil
}

// covers reports whether ptr, or one of its ancestors, matches the pattern: ignoring a
// value ignores everything inside it.
func (p *pattern) covers(ptr []byte) bool { return matchSegs(p.segs, ptr, true) }

// match reports whether ptr itself matches the pattern.
func (p *pattern) match(ptr []byte) bool { return matchSegs(p.segs, ptr, false) }

// matchSegs matches pattern segments against an escaped pointer ("" or "/a/b"). With
// prefix, the pattern may end before the pointer does.
func matchSegs(pat []string, ptr []byte, prefix bool) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for {
				if matchSegs(pat[1:], ptr, prefix) {
					return true
				}
				if len(ptr) == 0 {
					return false
				}
				_, ptr = nextSegment(ptr)
			}
		}
		if len(ptr) == 0 {
			return false
		}
		var seg []byte
		seg, ptr = nextSegment(ptr)
		if pat[0] != "*" && pat[0] != string(seg) {
			return false
		}
		pat = pat[1:]
	}
	return prefix || len(ptr) == 0
}

// nextSegment splits "/a/b" into "a" and "/b".
func nextSegment(ptr []byte) (seg, rest []byte) {
	ptr = ptr[1:]
	for i, c := range ptr {
		if c == '/' {
			return ptr[:i], ptr[i:]
		}
	}
	return ptr, nil
}

// appendSegment appends "/" and key, escaped as RFC 6901 says (~ as ~0, / as ~1).
func appendSegment(dst, key []byte) []byte {
	dst = append(dst, '/')
	for _, c := range key {
		switch c {
		case '~':
			dst = append(dst, '~', '0')
		case '/':
			dst = append(dst, '~', '1')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// ErrNoValue is returned by Lookup when the pointer names nothing in the document.
var ErrNoValue = errors.New("no value at pointer")

// Lookup returns the raw JSON text of the value that the RFC 6901 pointer ptr names in the
// JSON document doc ("" names the whole document). It fails when doc is not JSON, and with
// ErrNoValue when the pointer leads nowhere.
func Lookup(doc []byte, ptr string) ([]byte, error) {
	var d document
	if err := parse(&d, doc, DefaultMaxDepth); err != nil {
		return nil, fmt.Errorf("looking up %q: %w", ptr, err)
	}
	if ptr != "" && ptr[0] != '/' {
		return nil, fmt.Errorf("looking up %q: a pointer is empty or starts with /", ptr)
	}
	i := int32(0)
	rest := []byte(ptr)
	for len(rest) > 0 {
		var seg []byte
		seg, rest = nextSegment(rest)
		key := strings.NewReplacer("~1", "/", "~0", "~").Replace(string(seg))
		n := &d.nodes[i]
		found := int32(-1)
		switch n.kind {
		case kObject:
			for c := i + 1; c < n.next; {
				v := c + 1
				if string(d.text(&d.nodes[c])) == key {
					found = v // the last duplicate wins, as in encoding/json
				}
				c = d.nodes[v].next
			}
		case kArray:
			idx, err := strconv.Atoi(key)
			if err != nil || idx < 0 || (len(key) > 1 && key[0] == '0') {
				break
			}
			for c, k := i+1, 0; c < n.next; c, k = d.nodes[c].next, k+1 {
				if k == idx {
					found = c
					break
				}
			}
		}
		if found < 0 {
			return nil, fmt.Errorf("looking up %q: %w", ptr, ErrNoValue)
		}
		i = found
	}
	return d.raw(&d.nodes[i]), nil
}
