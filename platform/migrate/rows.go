package migrate

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// row is one row of a table, its values in the order of Table.Columns, as the database driver
// returned them (string, int64, time.Time, []byte, nil …).
type row []any

// maxParams bounds the placeholders of one statement, under SQLite's limit (32,766) and
// PostgreSQL's (65,535).
const maxParams = 30000

// colList is the table's columns, comma-separated.
func (t Table) colList() string { return strings.Join(t.Columns, ", ") }

// keyIdx returns the positions of the key's columns among the table's columns.
func (t Table) keyIdx() []int {
	idx := make([]int, len(t.Key))
	for i, k := range t.Key {
		idx[i] = slices.Index(t.Columns, k)
	}
	return idx
}

// colIdx returns the position of column c among the table's columns.
func (t Table) colIdx(c string) int { return slices.Index(t.Columns, c) }

// key returns r's key values.
func (t Table) key(r row) []any {
	idx := t.keyIdx()
	k := make([]any, len(idx))
	for i, j := range idx {
		k[i] = r[j]
	}
	return k
}

// scan reads every row of rows as values of t's columns.
func scan(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}, n int) ([]row, error) {
	defer rows.Close()
	var out []row
	for rows.Next() {
		r := make(row, n)
		ptrs := make([]any, n)
		for i := range r {
			ptrs[i] = &r[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range r {
			// Some drivers lend byte slices that the next row overwrites.
			if b, ok := v.([]byte); ok {
				r[i] = bytes.Clone(b)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// page returns up to limit rows of t whose key comes after after (nil: from the start), in the
// key's order as db sorts it. Each database pages in its own order; nothing here assumes two
// databases sort text alike.
func page(ctx context.Context, db *gorm.DB, t Table, after []any, limit int) ([]row, error) {
	var q strings.Builder
	fmt.Fprintf(&q, "SELECT %s FROM %s", t.colList(), t.Name)
	args := make([]any, 0, len(after)+1)
	if after != nil {
		if len(t.Key) == 1 {
			fmt.Fprintf(&q, " WHERE %s > ?", t.Key[0])
		} else {
			fmt.Fprintf(&q, " WHERE (%s) > (%s)", strings.Join(t.Key, ", "), placeholders(len(t.Key)))
		}
		args = append(args, after...)
	}
	fmt.Fprintf(&q, " ORDER BY %s LIMIT ?", strings.Join(t.Key, ", "))
	args = append(args, limit)
	rows, err := db.WithContext(ctx).Raw(q.String(), args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.Name, err)
	}
	out, err := scan(rows, len(t.Columns))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.Name, err)
	}
	return out, nil
}

// lookup returns the rows of t whose first key column is one of values. For a table with a
// longer key that is a superset of the rows wanted; callers match whole keys.
func lookup(ctx context.Context, db *gorm.DB, t Table, values []any) ([]row, error) {
	var out []row
	for chunk := range slices.Chunk(values, maxParams) {
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IN (%s)", t.colList(), t.Name, t.Key[0], placeholders(len(chunk)))
		rows, err := db.WithContext(ctx).Raw(q, chunk...).Rows()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.Name, err)
		}
		got, err := scan(rows, len(t.Columns))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.Name, err)
		}
		out = append(out, got...)
	}
	return out, nil
}

// existing returns which of values are keys of t (a table with a one-column key) in db.
func existing(ctx context.Context, db *gorm.DB, t Table, values []any) (map[string]bool, error) {
	found := map[string]bool{}
	for chunk := range slices.Chunk(values, maxParams) {
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IN (%s)", t.Key[0], t.Name, t.Key[0], placeholders(len(chunk)))
		rows, err := db.WithContext(ctx).Raw(q, chunk...).Rows()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.Name, err)
		}
		got, err := scan(rows, 1)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.Name, err)
		}
		for _, r := range got {
			found[canon(r[0], 0)] = true
		}
	}
	return found, nil
}

// upsert writes rows into t: new keys are inserted, existing ones replaced, except that a row
// never replaces one of a higher version (Table.Version). It writes as few statements as the
// engines' placeholder limits allow.
func upsert(tx *gorm.DB, t Table, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	per := max(1, maxParams/len(t.Columns))
	for chunk := range slices.Chunk(rows, per) {
		args := make([]any, 0, len(chunk)*len(t.Columns))
		for _, r := range chunk {
			for _, v := range r {
				args = append(args, writable(v))
			}
		}
		if err := tx.Exec(upsertSQL(t, len(chunk)), args...).Error; err != nil {
			return fmt.Errorf("writing %d rows of %s: %w", len(chunk), t.Name, err)
		}
	}
	return nil
}

// upsertSQL is the statement upsert runs for n rows.
func upsertSQL(t Table, n int) string {
	var q strings.Builder
	fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", t.Name, t.colList())
	one := "(" + placeholders(len(t.Columns)) + ")"
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(one)
	}
	fmt.Fprintf(&q, " ON CONFLICT (%s) ", strings.Join(t.Key, ", "))
	var sets []string
	for _, c := range t.Columns {
		if !slices.Contains(t.Key, c) {
			sets = append(sets, fmt.Sprintf("%s = excluded.%s", c, c))
		}
	}
	if len(sets) == 0 {
		q.WriteString("DO NOTHING")
		return q.String()
	}
	fmt.Fprintf(&q, "DO UPDATE SET %s", strings.Join(sets, ", "))
	if t.Version != "" {
		fmt.Fprintf(&q, " WHERE %s.%s <= excluded.%s", t.Name, t.Version, t.Version)
	}
	return q.String()
}

// writable converts a value read from one engine into one both engines store alike: times go
// in as UTC (the tables hold UTC), which PostgreSQL's TIMESTAMP would otherwise take as the
// wall time of whatever zone the value came with.
func writable(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC()
	}
	return v
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// canon renders a value so that the same value read from either engine renders alike: times
// in UTC, cut to prec (the coarser engine's precision; 0 keeps them whole), integers in
// decimal, bytes in hex, NULL as the word NULL (a text "NULL" is quoted).
func canon(v any, prec time.Duration) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		if x == "NULL" {
			return strconv.Quote(x)
		}
		return x
	case []byte:
		return "0x" + hex.EncodeToString(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		t := x.UTC()
		if prec > 0 {
			t = t.Truncate(prec)
		}
		return t.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// canonRow renders every value of r with canon.
func canonRow(r row, prec time.Duration) []string {
	out := make([]string, len(r))
	for i, v := range r {
		out[i] = canon(v, prec)
	}
	return out
}

// checksum is a row's checksum: FNV-1a over its rendered values.
func checksum(vals []string) uint64 {
	h := fnv.New64a()
	for _, v := range vals {
		h.Write([]byte(v))
		h.Write([]byte{0x1f})
	}
	return h.Sum64()
}

// keyString renders a key as one string, for maps and messages.
func keyString(vals []string) string { return strings.Join(vals, "\x1f") }

// encodeKey turns a key into the JSON the checkpoint keeps.
func encodeKey(k []any) (string, error) {
	vals := make([]any, len(k))
	for i, v := range k {
		switch x := v.(type) {
		case string, int64, nil:
			vals[i] = x
		case int32:
			vals[i] = int64(x)
		case int:
			vals[i] = int64(x)
		case []byte:
			vals[i] = string(x)
		default:
			return "", fmt.Errorf("a key value of type %T cannot be kept in a checkpoint (keys must be text or integers)", v)
		}
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return "", fmt.Errorf("encoding checkpoint key: %w", err)
	}
	return string(b), nil
}

// decodeKey reads a key encodeKey wrote.
func decodeKey(s string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil {
		return nil, fmt.Errorf("decoding checkpoint key %q: %w", s, err)
	}
	for i, v := range vals {
		if n, ok := v.(json.Number); ok {
			x, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("decoding checkpoint key %q: %w", s, err)
			}
			vals[i] = x
		}
	}
	return vals, nil
}
