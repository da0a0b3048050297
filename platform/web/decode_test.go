package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/problem"
)

// order is shaped like the shop's place-order request, with the kinds of field Decode must
// follow: a nested slice of structs, a pointer, a map and a free-form value.
type order struct {
	CustomerID string            `json:"customer_id"`
	Lines      []line            `json:"lines"`
	Limit      *int64            `json:"limit_cents,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Extra      any               `json:"extra,omitempty"`
	//lint:ignore U1000 an unexported field must not be settable from JSON; the test sends one.
	internal int
}

type line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		code  string // "" means accepted
		field string
		says  string // a substring of the problem's detail or field message
	}{
		{name: "valid", body: `{"customer_id":"c1","lines":[{"sku":"A","quantity":2}],"tags":{"Any":"Case"},"extra":{"x":[1,{"y":null}]}}`},
		{name: "escapes", body: `{"customer_id":"\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t","lines":[]}`},
		{name: "surrounding space", body: " \n{\"customer_id\":\"c\"}\r\n\t"},

		{name: "duplicate key", body: `{"customer_id":"c","lines":[{"sku":"A","quantity":-5,"quantity":1}]}`,
			code: "invalid_request", field: "lines[0].quantity", says: "twice"},
		{name: "duplicate top-level key", body: `{"customer_id":"a","customer_id":"b"}`,
			code: "invalid_request", field: "customer_id", says: "twice"},
		{name: "duplicate key in free-form value", body: `{"extra":{"a":1,"a":2}}`,
			code: "invalid_request", field: "extra.a", says: "twice"},
		{name: "duplicate key, second escaped", body: `{"customer_id":"a","customer\u005fid":"b"}`,
			code: "invalid_request", field: "customer_id", says: "twice"},
		{name: "case differs", body: `{"Customer_ID":"c","lines":[]}`,
			code: "invalid_request", field: "Customer_ID", says: `did you mean "customer_id"`},
		{name: "case differs, nested", body: `{"customer_id":"c","LINES":[]}`,
			code: "invalid_request", field: "LINES", says: "case-sensitive"},
		{name: "case differs in a line", body: `{"lines":[{"SKU":"A"}]}`,
			code: "invalid_request", field: "lines[0].SKU", says: `"sku"`},
		{name: "unknown field", body: `{"customer_id":"c","coupon":"FREE"}`,
			code: "invalid_request", field: "coupon", says: "unknown field"},
		{name: "unexported field is unknown", body: `{"internal":1}`,
			code: "invalid_request", field: "internal", says: "unknown field"},
		{name: "NUL escaped", body: `{"customer_id":"a\u0000b"}`,
			code: "invalid_request", field: "customer_id", says: "NUL"},
		{name: "NUL in a line", body: `{"lines":[{"sku":"\u0000"}]}`,
			code: "invalid_request", field: "lines[0].sku", says: "NUL"},
		{name: "NUL in a key", body: `{"extra":{"a\u0000":1}}`,
			code: "invalid_request", field: "extra.(key)", says: "NUL"},
		{name: "lone high surrogate", body: `{"customer_id":"\ud800"}`,
			code: "invalid_request", field: "customer_id", says: "surrogate"},
		{name: "lone low surrogate", body: `{"customer_id":"\udc00x"}`,
			code: "invalid_request", field: "customer_id", says: "surrogate"},
		{name: "high then non-surrogate", body: `{"customer_id":"\ud800\u0041"}`,
			code: "invalid_request", field: "customer_id", says: "surrogate"},
		{name: "invalid UTF-8", body: "{\"customer_id\":\"\xff\"}", code: "malformed_json", says: "invalid UTF-8"},
		{name: "truncated UTF-8", body: "{\"customer_id\":\"\xc3\"}", code: "malformed_json", says: "invalid UTF-8"},
		{name: "UTF-8 outside strings", body: "{\"customer_id\":\"c\"}\xc3\xa9", code: "malformed_json"},
		{name: "raw control character", body: "{\"customer_id\":\"a\x01\"}", code: "malformed_json", says: "control character"},
		{name: "empty", body: "  ", code: "malformed_json", says: "empty"},
		{name: "truncated", body: `{"customer_id":`, code: "malformed_json", says: "ends early"},
		{name: "trailing data", body: `{"customer_id":"c"} {}`, code: "malformed_json", says: "after the JSON value"},
		{name: "trailing comma", body: `{"customer_id":"c",}`, code: "malformed_json"},
		{name: "single quotes", body: `{'customer_id':'c'}`, code: "malformed_json"},
		{name: "leading zero", body: `{"lines":[{"quantity":01}]}`, code: "malformed_json"},
		{name: "bad escape", body: `{"customer_id":"\x"}`, code: "malformed_json", says: "escape"},
		{name: "short unicode escape", body: `{"customer_id":"\u12"}`, code: "malformed_json"},
		{name: "too deep", body: `{"extra":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
			code: "malformed_json", says: "nested deeper"},
		{name: "wrong type", body: `{"lines":[{"quantity":"two"}]}`, code: "invalid_request", field: "lines[0].quantity"},
		{name: "fraction for an integer", body: `{"lines":[{"quantity":1.5}]}`, code: "invalid_request", field: "lines[0].quantity"},
		{name: "overflowing integer", body: `{"lines":[{"quantity":1e30}]}`, code: "invalid_request", field: "lines[0].quantity"},
		{name: "not an object", body: `[1]`, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v order
			err := Decode([]byte(tt.body), &v)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				var want order
				if err := json.Unmarshal([]byte(tt.body), &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(v, want) {
					t.Errorf("decoded %+v, encoding/json gives %+v", v, want)
				}
				return
			}
			var p *problem.Problem
			if !errors.As(err, &p) {
				t.Fatalf("err = %v, want a problem", err)
			}
			if p.Status != http.StatusBadRequest || p.Code != tt.code {
				t.Errorf("problem %d %s, want 400 %s: %v", p.Status, p.Code, tt.code, p)
			}
			said := p.Detail
			for _, fe := range p.Errors {
				said += " " + fe.Message
			}
			// encoding/json before Go 1.27 names no array index in a type error's field.
			if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field &&
				!(runtime.Version() < "go1.27" && p.Errors[0].Field == strings.ReplaceAll(tt.field, "[0]", ""))) {
				t.Errorf("field errors %+v, want one on %q", p.Errors, tt.field)
			}
			if !strings.Contains(said, tt.says) {
				t.Errorf("problem says %q, want it to mention %q", said, tt.says)
			}
		})
	}
}

func TestBindContentType(t *testing.T) {
	tests := []struct {
		ct     string
		status int
	}{
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{"application/json; charset=UTF-8", 200},
		{"Application/JSON", 200},
		{"", 415},
		{"text/plain", 415},
		{"application/problem+json", 415},
		{"application/vnd.api+json", 415},
		{"application/json; charset=latin1", 415},
		{"application/json; boundary=x", 415},
		{"application/json;;", 415},
	}
	e := New(nil, nil)
	e.POST("/", func(c echo.Context) error {
		var v order
		if err := Bind(c, &v); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"customer_id":"c"}`))
		if tt.ct != "" {
			req.Header.Set("Content-Type", tt.ct)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("Content-Type %q: status %d, want %d: %s", tt.ct, rec.Code, tt.status, rec.Body)
		}
		if tt.status == 415 && !strings.Contains(rec.Body.String(), `"code":"unsupported_media_type"`) {
			t.Errorf("Content-Type %q: body %s", tt.ct, rec.Body)
		}
	}
}

// FuzzDecode checks that Decode never panics, refuses only with a 400 problem, and accepts
// only what encoding/json decodes the same way and what holds valid, NUL-free text under
// unique keys. The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var v order
		err := Decode(body, &v)
		if err != nil {
			var p *problem.Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Code == "" {
				t.Fatalf("Decode(%q) = %v, want a 400 problem with a code", body, err)
			}
			return
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("accepted invalid JSON or UTF-8: %q", body)
		}
		var want order
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(v, want) {
			t.Fatalf("Decode(%q) = %+v, encoding/json gives %+v", body, v, want)
		}
		checkText(t, body, reflect.ValueOf(want))
		checkUniqueKeys(t, body)
	})
}

// checkText fails on a NUL or U+FFFD (what an invalid sequence decodes to) in any decoded
// string that the body did not spell as U+FFFD itself.
func checkText(t *testing.T, body []byte, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if strings.ContainsRune(s, 0) {
			t.Fatalf("accepted a NUL: %q", body)
		}
		if strings.ContainsRune(s, utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) &&
			!bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
			t.Fatalf("accepted text that decodes to U+FFFD: %q", body)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkText(t, body, v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			checkText(t, body, v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			checkText(t, body, k)
			checkText(t, body, v.MapIndex(k))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				checkText(t, body, v.Field(i))
			}
		}
	}
}

// checkUniqueKeys walks body's tokens with encoding/json (not Decode's scanner) and fails on
// an object with a repeated key.
func checkUniqueKeys(t *testing.T, body []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				t.Fatalf("accepted a repeated key %q: %q", k, body)
			}
			top.keys[k] = true
			top.wantKey = false
			continue
		}
		if top != nil && top.object {
			top.wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
