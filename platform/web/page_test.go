package web

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/fault"
)

func TestParsePage(t *testing.T) {
	cur := Cursor("2024-05-01T10:00:00.123Z", "id:with|odd,chars")
	tests := []struct {
		query     string
		wantLimit int
		wantAfter []string
		badField  string
	}{
		{query: "", wantLimit: 50},
		{query: "limit=1", wantLimit: 1},
		{query: "limit=200", wantLimit: 200},
		{query: "limit=7&cursor=" + url.QueryEscape(cur), wantLimit: 7, wantAfter: []string{"2024-05-01T10:00:00.123Z", "id:with|odd,chars"}},
		{query: "limit=0", badField: "limit"},
		{query: "limit=201", badField: "limit"},
		{query: "limit=-1", badField: "limit"},
		{query: "limit=ten", badField: "limit"},
		{query: "limit=99999999999999999999", badField: "limit"},
		{query: "cursor=not-base64!", badField: "cursor"},
		{query: "cursor=" + Cursor("only one part"), badField: "cursor"},
		{query: "cursor=" + Cursor("a", "b", "c"), badField: "cursor"},
		{query: "cursor=" + Cursor("a", "b") + "AA", badField: "cursor"},
	}
	e := echo.New()
	for _, tt := range tests {
		c := e.NewContext(httptest.NewRequest("GET", "/?"+tt.query, nil), httptest.NewRecorder())
		p, err := ParsePage(c, 50, 200, 2)
		if tt.badField != "" {
			fe, ok := fault.As(err)
			if !ok || !errors.Is(err, fault.ErrInvalid) || len(fe.Fields) != 1 || fe.Fields[0].Name != tt.badField {
				t.Errorf("%q: err = %v, want an invalid %s", tt.query, err, tt.badField)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.query, err)
			continue
		}
		if p.Limit != tt.wantLimit || !slices.Equal(p.After, tt.wantAfter) {
			t.Errorf("%q: page %+v, want limit %d after %q", tt.query, p, tt.wantLimit, tt.wantAfter)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, key := range [][]string{{"", ""}, {"a", ""}, {"1:2", "3:"}, {"ünïcode", "\x00"}} {
		got, ok := decodeCursor(Cursor(key...), 2)
		if !ok || !slices.Equal(got, key) {
			t.Errorf("Cursor(%q) decodes to %q, %v", key, got, ok)
		}
	}
}
