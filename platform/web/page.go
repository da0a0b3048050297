package web

import (
	"bytes"
	"encoding/base64"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/fault"
)

// maxCursor bounds the length of a cursor a client may send back.
const maxCursor = 1024

// Page is where a list request starts and how much it takes: the query parameters limit
// and cursor, parsed.
type Page struct {
	// Limit is how many entries the page may hold.
	Limit int
	// After is the sort key of the last entry of the previous page (the cursor, decoded); nil
	// for the first page.
	After []string
}

// ParsePage reads the query parameters limit (1 to maxLimit, default defaultLimit) and
// cursor (opaque: what the previous page returned as next_cursor, holding a sort key of
// keyParts strings). Bad values are the client's 400, naming the parameter.
func ParsePage(c echo.Context, defaultLimit, maxLimit, keyParts int) (Page, error) {
	p := Page{Limit: defaultLimit}
	var f fault.Fields
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		f.Check(err == nil && n >= 1 && n <= maxLimit, "limit", "must be an integer from 1 to %d", maxLimit)
		p.Limit = n
	}
	if s := c.QueryParam("cursor"); s != "" {
		after, ok := decodeCursor(s, keyParts)
		f.Check(ok, "cursor", "is not a cursor this list returned")
		p.After = after
	}
	if err := f.Err(); err != nil {
		return Page{}, err
	}
	return p, nil
}

// Cursor encodes a sort key as an opaque next_cursor. Clients must not build or read
// cursors: the encoding may change.
func Cursor(key ...string) string {
	// Each part is length-prefixed ("3:abc"), so a part may hold any text.
	var b []byte
	for _, k := range key {
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, parts int) ([]string, bool) {
	if len(s) > maxCursor {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	key := make([]string, 0, parts)
	for len(b) > 0 && len(key) < parts {
		size, rest, ok := bytes.Cut(b, []byte(":"))
		n, err := strconv.Atoi(string(size))
		if !ok || err != nil || n < 0 || n > len(rest) {
			return nil, false
		}
		key = append(key, string(rest[:n]))
		b = rest[n:]
	}
	return key, len(key) == parts && len(b) == 0
}
