package web

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/problem"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

// MaxDepth is how deeply a request body's arrays and objects may nest. The shop's requests
// nest three levels; the bound keeps a hostile body from costing a deep recursion.
const MaxDepth = 32

// Bind decodes the request's JSON body into v strictly: the content type must be
// application/json (415), the body at most MaxBody (413) and arrive within the server's body
// timeout (408), and Decode must accept it (400).
func Bind(c echo.Context, v any) error {
	r := c.Request()
	ct := r.Header.Get(echo.HeaderContentType)
	if !IsJSON(ct) {
		return problem.New(http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("want Content-Type application/json (optionally with charset=utf-8), got %q", ct))
	}
	body, err := ReadBody(c)
	if err != nil {
		return err
	}
	return Decode(body, v)
}

// IsJSON reports whether ct is application/json, with no parameter but charset=utf-8: the
// only request content type Bind accepts. Suffixes such as application/problem+json are refused: a request is not a problem
// document, and accepting every +json type would make the contract say less than it does.
func IsJSON(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// ReadBody reads the whole request body (at most MaxBody, else 413; within the server's body
// timeout, else 408) and leaves a fresh copy in the request for whoever reads it next.
func ReadBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	tooLarge := problem.New(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over %d bytes", MaxBody))
	if r.ContentLength > MaxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, tooLarge
		case errors.Is(err, ErrBodyTimeout):
			return nil, bodyTimeout(c.Response())
		}
		return nil, problem.New(http.StatusBadRequest, "unreadable_body", err.Error())
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// Decode decodes the JSON document body into v (a pointer) strictly, and answers what it
// refuses with a 400 problem that says why:
//   - malformed JSON, invalid UTF-8, nesting deeper than MaxDepth, anything after the value
//     (code malformed_json);
//   - a key that appears twice in an object, which encoding/json would let the last one win;
//   - a key that names no field of v, including one that differs from a field only in case,
//     which encoding/json would match case-insensitively;
//   - a string holding NUL (U+0000) or an escaped lone surrogate, which encoding/json would
//     store as U+FFFD;
//   - a value of the wrong type (these have code invalid_request and name the field).
//
// It is the one decoder of every Ficus HTTP handler, monolith and extracted services alike.
func Decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return problem.New(http.StatusBadRequest, "malformed_json", "the body is empty")
	}
	s := &scan{data: body}
	s.skipSpace()
	if err := s.value(reflect.TypeOf(v), "", 0); err != nil {
		return err.problem()
	}
	s.skipSpace()
	if s.pos < len(s.data) {
		return problem.New(http.StatusBadRequest, "malformed_json", "unexpected data after the JSON value")
	}
	// The document is now known to be well-formed, unique-keyed and exact-cased, so
	// encoding/json only fills v and checks types.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	return nil
}

func invalidJSON(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		p := problem.New(http.StatusBadRequest, "invalid_request", "a field has the wrong type")
		field := typeErrorField(te.Field)
		if field == "" {
			field = "(body)"
		}
		p.Errors = []problem.FieldError{{Field: field, Message: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}}
		return p
	}
	// The scan accepted the document, so what is left is a value a type's own decoder
	// refused (a time, say).
	return problem.New(http.StatusBadRequest, "invalid_request", err.Error())
}

// typeErrorField names the field of an encoding/json type error as problem fields do:
// "lines.0.quantity" (Go 1.27's encoding/json names array indexes) is "lines[0].quantity".
// Earlier releases name no index ("lines.quantity"), which stays as it is.
func typeErrorField(f string) string {
	if f == "" {
		return ""
	}
	var b strings.Builder
	for i, part := range strings.Split(f, ".") {
		if _, err := strconv.ParseUint(part, 10, 64); err == nil && i > 0 {
			b.WriteString("[" + part + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// scanError is what the scan refuses: a syntax error (field empty) or a field's error.
type scanError struct {
	field string
	msg   string
}

func (e *scanError) problem() *problem.Problem {
	if e.field == "" {
		return problem.New(http.StatusBadRequest, "malformed_json", e.msg)
	}
	p := problem.New(http.StatusBadRequest, "invalid_request", "invalid field: "+e.field+": "+e.msg)
	p.Errors = []problem.FieldError{{Field: e.field, Message: e.msg}}
	return p
}

// scan walks a JSON document by RFC 8259 and, where it can, the Go type it will be decoded
// into, to refuse what encoding/json silently accepts.
type scan struct {
	data []byte
	pos  int
}

func (s *scan) syntax(format string, args ...any) *scanError {
	return &scanError{msg: fmt.Sprintf("malformed JSON at byte %d: ", s.pos) + fmt.Sprintf(format, args...)}
}

func (s *scan) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value scans one value at path, to be decoded into t (nil when its shape is not checked).
func (s *scan) value(t reflect.Type, path string, depth int) *scanError {
	if s.pos >= len(s.data) {
		return s.syntax("the JSON ends early")
	}
	t = target(t)
	switch c := s.data[s.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return s.syntax("nested deeper than %d levels", MaxDepth)
		}
		return s.object(t, path, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return s.syntax("nested deeper than %d levels", MaxDepth)
		}
		return s.array(t, path, depth+1)
	case c == '"':
		_, err := s.str(path, false)
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return s.syntax("unexpected %s", quoteByte(s.data[s.pos]))
}

func (s *scan) object(t reflect.Type, path string, depth int) *scanError {
	s.pos++ // {
	seen := map[string]bool{}
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			if s.pos >= len(s.data) {
				return s.syntax("the JSON ends early")
			}
			return s.syntax("want an object key, got %s", quoteByte(s.data[s.pos]))
		}
		key, err := s.str(path, true)
		if err != nil {
			return err
		}
		field := join(path, key)
		if seen[key] {
			return &scanError{field: field, msg: "appears twice in the object"}
		}
		seen[key] = true
		ft, err := member(t, key, field)
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.syntax("want ':' after an object key")
		}
		s.pos++
		s.skipSpace()
		if err := s.value(ft, field, depth); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.syntax("the JSON ends early")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.syntax("want ',' or '}' in an object, got %s", quoteByte(s.data[s.pos]))
		}
	}
}

func (s *scan) array(t reflect.Type, path string, depth int) *scanError {
	s.pos++ // [
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.skipSpace()
		if err := s.value(elem, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.syntax("the JSON ends early")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.syntax("want ',' or ']' in an array, got %s", quoteByte(s.data[s.pos]))
		}
	}
}

// str scans a string; it returns the decoded text when keep is set (keys), else "".
func (s *scan) str(path string, keep bool) (string, *scanError) {
	s.pos++ // "
	var out strings.Builder
	where := path
	if keep {
		where = join(path, "(key)")
	}
	if where == "" {
		where = "(body)"
	}
	for {
		if s.pos >= len(s.data) {
			return "", s.syntax("the JSON ends early, inside a string")
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return out.String(), nil
		case c < 0x20:
			return "", s.syntax("control character %s in a string (escape it)", quoteByte(c))
		case c == '\\':
			r, err := s.escape(where)
			if err != nil {
				return "", err
			}
			if keep {
				out.WriteRune(r)
			}
		case c < utf8.RuneSelf:
			s.pos++
			if keep {
				out.WriteByte(c)
			}
		default:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", s.syntax("invalid UTF-8")
			}
			s.pos += size
			if keep {
				out.WriteRune(r)
			}
		}
	}
}

// escape scans one escape sequence and returns the rune it stands for. NUL and lone
// surrogates are refused as the field's error: they are well-formed JSON, but no text the
// shop stores.
func (s *scan) escape(where string) (rune, *scanError) {
	if s.pos+1 >= len(s.data) {
		return 0, s.syntax("the JSON ends early, inside an escape")
	}
	c := s.data[s.pos+1]
	switch c {
	case '"', '\\', '/':
		s.pos += 2
		return rune(c), nil
	case 'b', 'f', 'n', 'r', 't':
		s.pos += 2
		return rune("\b\f\n\r\t"[strings.IndexByte("bfnrt", c)]), nil
	case 'u':
	default:
		return 0, s.syntax("invalid escape \\%c", c)
	}
	r, ok := s.hex4(s.pos + 2)
	if !ok {
		return 0, s.syntax("invalid \\u escape")
	}
	s.pos += 6
	switch {
	case r == 0:
		return 0, &scanError{field: where, msg: "contains NUL (\\u0000), which no text may hold"}
	case utf16.IsSurrogate(r):
		if r < 0xDC00 && s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
			if low, ok := s.hex4(s.pos + 2); ok {
				if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
					s.pos += 6
					return pair, nil
				}
			}
		}
		return 0, &scanError{field: where, msg: fmt.Sprintf("contains a lone UTF-16 surrogate (\\u%04x), which is not valid Unicode", r)}
	}
	return r, nil
}

func (s *scan) hex4(at int) (rune, bool) {
	if at+4 > len(s.data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(s.data[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}

func (s *scan) literal(word string) *scanError {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(word)) {
		return s.syntax("invalid literal (want %s)", word)
	}
	s.pos += len(word)
	return nil
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scan) number() *scanError {
	start := s.pos
	if s.data[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case digits() == 0:
		return s.syntax("invalid number %q", s.data[start:s.pos])
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.syntax("invalid number %q", s.data[start:s.pos])
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.syntax("invalid number %q", s.data[start:s.pos])
		}
	}
	return nil
}

// target is the type whose shape the scan checks for t: pointers are followed, and nil means
// "any shape" (an interface, or a type that decodes itself).
func target(t reflect.Type) reflect.Type {
	for t != nil {
		if pt := reflect.PointerTo(t); pt.Implements(reflect.TypeFor[json.Unmarshaler]()) || pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Interface:
			return nil
		default:
			return t
		}
	}
	return nil
}

// member returns the type of t's member key (nil: unchecked), or the error of a key that
// names no field.
func member(t reflect.Type, key, field string) (reflect.Type, *scanError) {
	if t == nil {
		return nil, nil
	}
	switch t.Kind() {
	case reflect.Map:
		return t.Elem(), nil
	case reflect.Struct:
		fields := jsonFields(t)
		if ft, ok := fields[key]; ok {
			return ft, nil
		}
		for name := range fields {
			if strings.EqualFold(name, key) {
				return nil, &scanError{field: field, msg: fmt.Sprintf("unknown field; field names are case-sensitive: did you mean %q?", name)}
			}
		}
		return nil, &scanError{field: field, msg: "unknown field"}
	}
	// An object where t wants something else: encoding/json reports the type.
	return nil, nil
}

// jsonFields maps the JSON names of a struct's fields, as encoding/json sees them, to their
// types. Request types are small, so this is computed per call rather than cached.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, nt := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = nt
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// join names a member of path as problem fields do: "lines[0].quantity".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
