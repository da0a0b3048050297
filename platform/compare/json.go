package compare

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is the JSON type of a parsed value.
type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[k]
}

// node is one JSON value of a document, stored flat in document order: a container's
// children follow it, an object's as alternating key and value, and next skips the whole
// subtree. Keeping the tree in one reused slice of small structs, with offsets instead of
// pointers and strings, is what lets a comparison run without allocating.
type node struct {
	// start and end delimit the value's raw text in the document.
	start, end int32
	// text0 and text1 delimit a string's decoded content or a number's literal: in the
	// document when the string has no escapes, else in the parser's arena.
	text0, text1 int32
	// next is the index of the node after this value's subtree.
	next int32
	kind kind
	// arena says text0:text1 index the arena rather than the document.
	arena bool
	// truth is a boolean's value.
	truth bool
}

// errTooDeep is returned for documents nested deeper than the limit.
var errTooDeep = errors.New("json: nested too deeply")

// document is a parsed JSON text.
type document struct {
	data  []byte
	nodes []node
	arena []byte
}

// text returns a string's decoded content, or a number's literal.
func (d *document) text(n *node) []byte {
	if n.arena {
		return d.arena[n.text0:n.text1]
	}
	return d.data[n.text0:n.text1]
}

// raw returns a value's text as it appears in the document.
func (d *document) raw(n *node) []byte { return d.data[n.start:n.end] }

// parser reads one JSON text (RFC 8259) into a document, reusing the document's slices.
type parser struct {
	doc      *document
	pos      int
	maxDepth int
}

// parse resets doc and fills it from data. It fails on anything that is not exactly one
// JSON value surrounded by optional whitespace, and on nesting deeper than maxDepth.
func parse(doc *document, data []byte, maxDepth int) error {
	doc.data = data
	doc.nodes = doc.nodes[:0]
	doc.arena = doc.arena[:0]
	if len(data) > math.MaxInt32 {
		return errors.New("json: document too large")
	}
	p := parser{doc: doc, maxDepth: maxDepth}
	p.skipSpace()
	if err := p.value(0); err != nil {
		return err
	}
	p.skipSpace()
	if p.pos != len(data) {
		return p.errorf("unexpected data after the value")
	}
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) skipSpace() {
	for p.pos < len(p.doc.data) {
		switch p.doc.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) error {
	data := p.doc.data
	if p.pos >= len(data) {
		return p.errorf("unexpected end of input")
	}
	switch c := data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == 't':
		return p.literal("true", kBool, true)
	case c == 'f':
		return p.literal("false", kBool, false)
	case c == 'n':
		return p.literal("null", kNull, false)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return p.errorf("unexpected byte %q", c)
	}
}

func (p *parser) literal(word string, k kind, truth bool) error {
	end := p.pos + len(word)
	if end > len(p.doc.data) || string(p.doc.data[p.pos:end]) != word {
		return p.errorf("invalid literal")
	}
	i := int32(len(p.doc.nodes))
	p.doc.nodes = append(p.doc.nodes, node{start: int32(p.pos), end: int32(end), next: i + 1, kind: k, truth: truth})
	p.pos = end
	return nil
}

func (p *parser) number() error {
	data, start := p.doc.data, p.pos
	if data[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(data) && data[p.pos] == '0':
		p.pos++
	case p.pos < len(data) && data[p.pos] >= '1' && data[p.pos] <= '9':
		p.digits()
	default:
		return p.errorf("invalid number")
	}
	if p.pos < len(data) && data[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return p.errorf("invalid number: no digits after the point")
		}
	}
	if p.pos < len(data) && (data[p.pos] == 'e' || data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(data) && (data[p.pos] == '+' || data[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return p.errorf("invalid number: no digits in the exponent")
		}
	}
	i := int32(len(p.doc.nodes))
	p.doc.nodes = append(p.doc.nodes, node{start: int32(start), end: int32(p.pos),
		text0: int32(start), text1: int32(p.pos), next: i + 1, kind: kNumber})
	return nil
}

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.doc.data) && p.doc.data[p.pos] >= '0' && p.doc.data[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

// str reads a string. Its content is taken from the document as is when it has no escapes;
// otherwise it is decoded into the arena, so comparisons see what the sender meant.
func (p *parser) str() error {
	data, start := p.doc.data, p.pos
	p.pos++ // opening quote
	escaped := false
	for {
		if p.pos >= len(data) {
			return p.errorf("unterminated string")
		}
		c := data[p.pos]
		switch {
		case c == '"':
			p.pos++
			n := node{start: int32(start), end: int32(p.pos), text0: int32(start + 1), text1: int32(p.pos - 1), kind: kString}
			if escaped {
				a0 := len(p.doc.arena)
				var err error
				if p.doc.arena, err = unescape(p.doc.arena, data[start+1:p.pos-1]); err != nil {
					p.pos = start
					return p.errorf("%v", err)
				}
				n.text0, n.text1, n.arena = int32(a0), int32(len(p.doc.arena)), true
			}
			n.next = int32(len(p.doc.nodes)) + 1
			p.doc.nodes = append(p.doc.nodes, n)
			return nil
		case c == '\\':
			escaped = true
			p.pos += 2 // the escape is checked by unescape
		case c < 0x20:
			return p.errorf("control character in string")
		default:
			p.pos++
		}
	}
}

// unescape appends the decoded form of a string's content (without quotes) to dst.
// Lone surrogates become U+FFFD, as encoding/json does.
func unescape(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return dst, errors.New("unterminated escape")
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				return dst, errors.New("invalid \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2, ok := hex4(s[i+2:]); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, fmt.Errorf("invalid escape \\%c", e)
		}
		i += 2
	}
	return dst, nil
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (p *parser) array(depth int) error {
	if depth >= p.maxDepth {
		return errTooDeep
	}
	i := len(p.doc.nodes)
	p.doc.nodes = append(p.doc.nodes, node{start: int32(p.pos), kind: kArray})
	p.pos++
	p.skipSpace()
	if p.pos < len(p.doc.data) && p.doc.data[p.pos] == ']' {
		p.pos++
	} else {
		for {
			p.skipSpace()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.pos >= len(p.doc.data) {
				return p.errorf("unterminated array")
			}
			c := p.doc.data[p.pos]
			p.pos++
			if c == ']' {
				break
			}
			if c != ',' {
				p.pos--
				return p.errorf("want , or ] in array")
			}
		}
	}
	p.doc.nodes[i].end = int32(p.pos)
	p.doc.nodes[i].next = int32(len(p.doc.nodes))
	return nil
}

func (p *parser) object(depth int) error {
	if depth >= p.maxDepth {
		return errTooDeep
	}
	i := len(p.doc.nodes)
	p.doc.nodes = append(p.doc.nodes, node{start: int32(p.pos), kind: kObject})
	p.pos++
	p.skipSpace()
	if p.pos < len(p.doc.data) && p.doc.data[p.pos] == '}' {
		p.pos++
	} else {
		for {
			p.skipSpace()
			if p.pos >= len(p.doc.data) || p.doc.data[p.pos] != '"' {
				return p.errorf("want a string key in object")
			}
			if err := p.str(); err != nil {
				return err
			}
			p.skipSpace()
			if p.pos >= len(p.doc.data) || p.doc.data[p.pos] != ':' {
				return p.errorf("want : after object key")
			}
			p.pos++
			p.skipSpace()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.pos >= len(p.doc.data) {
				return p.errorf("unterminated object")
			}
			c := p.doc.data[p.pos]
			p.pos++
			if c == '}' {
				break
			}
			if c != ',' {
				p.pos--
				return p.errorf("want , or } in object")
			}
		}
	}
	p.doc.nodes[i].end = int32(p.pos)
	p.doc.nodes[i].next = int32(len(p.doc.nodes))
	return nil
}
