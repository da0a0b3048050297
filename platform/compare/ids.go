package compare

import (
	"fmt"
	"slices"
	"sync"
)

// DefaultMaxIDs is how many pairs an IDs keeps when its Max is zero.
const DefaultMaxIDs = 100_000

// IDs is a run's mapping between values that each side generated for the same thing: the
// order id side A gave an order and the one side B gave it. Comparisons learn pairs from
// Rules.Capture and callers add their own with Learn; a value of A paired with a value of B
// then counts as equal to it, also inside longer strings ("/api/orders/<id>"). The mapping
// is one-to-one: a value already paired with another is a difference, not a new pair.
//
// The zero value is an empty mapping ready to use. An IDs is safe for concurrent use.
type IDs struct {
	// Max bounds the pairs kept; beyond it the oldest pair is forgotten, so a long-running
	// comparison (shadow traffic) holds bounded memory. Zero means DefaultMaxIDs. Set it
	// before first use.
	Max int

	mu       sync.RWMutex
	ab, ba   map[string]string
	order    []string // A values in learning order, a ring once full
	head     int
	lenCount map[int]int
	lens     []int // distinct lengths of A values, longest first
}

// ConflictError says a value is already paired with another.
type ConflictError struct {
	A, B string
	// Side is "A" when A was paired with Other, "B" when B was.
	Side  string
	Other string
}

func (e *ConflictError) Error() string {
	if e.Side == "A" {
		return fmt.Sprintf("A's %q is paired with B's %q, not %q", e.A, e.Other, e.B)
	}
	return fmt.Sprintf("B's %q is paired with A's %q, not %q", e.B, e.Other, e.A)
}

// Learn pairs A's value a with B's value b. Learning a pair again is a no-op; pairing
// either with a third value fails with a *ConflictError.
func (m *IDs) Learn(a, b string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(a, b); err != nil {
		return err
	}
	m.add(a, b)
	return nil
}

// Lookup returns the value of B paired with A's value a.
func (m *IDs) Lookup(a string) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.ab[a]
	return b, ok
}

// Len returns how many pairs are known.
func (m *IDs) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.ab)
}

func (m *IDs) check(a, b string) error {
	if old, ok := m.ab[a]; ok && old != b {
		return &ConflictError{A: a, B: b, Side: "A", Other: old}
	}
	if old, ok := m.ba[b]; ok && old != a {
		return &ConflictError{A: a, B: b, Side: "B", Other: old}
	}
	return nil
}

func (m *IDs) add(a, b string) {
	if _, ok := m.ab[a]; ok {
		return
	}
	if m.ab == nil {
		m.ab, m.ba, m.lenCount = map[string]string{}, map[string]string{}, map[int]int{}
	}
	limit := m.Max
	if limit <= 0 {
		limit = DefaultMaxIDs
	}
	if len(m.order) < limit {
		m.order = append(m.order, a)
	} else {
		old := m.order[m.head]
		delete(m.ba, m.ab[old])
		delete(m.ab, old)
		m.countLen(len(old), -1)
		m.order[m.head] = a
		m.head = (m.head + 1) % limit
	}
	m.ab[a], m.ba[b] = b, a
	m.countLen(len(a), +1)
}

func (m *IDs) countLen(n, delta int) {
	m.lenCount[n] += delta
	switch m.lenCount[n] {
	case 0:
		delete(m.lenCount, n)
		m.lens = slices.DeleteFunc(m.lens, func(l int) bool { return l == n })
	case 1:
		if delta > 0 {
			m.lens = append(m.lens, n)
			slices.SortFunc(m.lens, func(x, y int) int { return y - x })
		}
	}
}

// learnAll pairs every A value with its B value, or none of them when one conflicts.
func (m *IDs) learnAll(pairs [][2][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range pairs {
		if err := m.check(string(p[0]), string(p[1])); err != nil {
			return err
		}
		// Two pairs of one call must agree with each other too.
		for _, q := range pairs[:i] {
			if (string(q[0]) == string(p[0])) != (string(q[1]) == string(p[1])) {
				return &ConflictError{A: string(p[0]), B: string(p[1]), Side: "A", Other: string(q[1])}
			}
		}
	}
	for _, p := range pairs {
		m.add(string(p[0]), string(p[1]))
	}
	return nil
}

// equalUnder reports whether a equals b once every known A value in a is replaced by its
// B value. It only replaces whole tokens (runs of bytes that can make up an id, see
// idByte), so "cust-1" is not found in "cust-10"; that also keeps it to a few map lookups
// per token.
func (m *IDs) equalUnder(a, b []byte) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.ab) == 0 {
		return false
	}
	i, j := 0, 0
	for i < len(a) {
		if i == 0 || !idByte(a[i-1]) {
			replaced := false
			for _, n := range m.lens {
				if i+n > len(a) {
					continue
				}
				if i+n < len(a) && idByte(a[i+n]) {
					continue // a longer token, not this id
				}
				v, ok := m.ab[string(a[i:i+n])]
				if ok && len(b)-j >= len(v) && string(b[j:j+len(v)]) == v && (j+len(v) == len(b) || !idByte(b[j+len(v)])) {
					i, j, replaced = i+n, j+len(v), true
					break
				}
			}
			if replaced {
				continue
			}
		}
		if j >= len(b) || a[i] != b[j] {
			return false
		}
		i, j = i+1, j+1
	}
	return j == len(b)
}

// idByte says whether c can be part of a generated id (letters, digits, - and _).
func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// reset empties the mapping, keeping its storage (for per-comparison mappings).
func (m *IDs) reset() {
	clear(m.ab)
	clear(m.ba)
	clear(m.lenCount)
	m.order, m.lens, m.head = m.order[:0], m.lens[:0], 0
}
