package monolith_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// insertOrders writes n orders of customer (one line each) straight into the orders tables,
// in batches: the test is about listing them, and placing 100,000 through HTTP would take
// minutes. Pairs of orders share a creation time, so the id must break ties.
func insertOrders(t *testing.T, s *shop, customer string, n int) time.Time {
	t.Helper()
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	const batch = 500
	err := s.m.DB.Transaction(func(tx *gorm.DB) error {
		for start := 0; start < n; start += batch {
			end := min(start+batch, n)
			var orders, lines strings.Builder
			var oargs, largs []any
			for i := start; i < end; i++ {
				if i > start {
					orders.WriteString(", ")
					lines.WriteString(", ")
				}
				orders.WriteString("(?, ?, 'placed', 100, ?, ?)")
				lines.WriteString("(?, 'BOOK-1', 1, 100)")
				id := fmt.Sprintf("o-%06d", i)
				oargs = append(oargs, id, customer, "p-"+id, base.Add(time.Duration(i/2)*time.Millisecond))
				largs = append(largs, id)
			}
			if err := tx.Exec("INSERT INTO orders_orders (id, customer_id, status, total_cents, payment_id, created_at) VALUES "+orders.String(), oargs...).Error; err != nil {
				return err
			}
			if err := tx.Exec("INSERT INTO orders_lines (order_id, sku, quantity, unit_price_cents) VALUES "+lines.String(), largs...).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return base
}

type orderPage struct {
	Orders []struct {
		ID        string `json:"id"`
		CreatedAt string `json:"created_at"`
		Lines     []any  `json:"lines"`
	} `json:"orders"`
	NextCursor string `json:"next_cursor"`
}

// getPage fetches one page without the contract check, which would dominate the run; the
// first and last pages are checked through shop.do.
func getPage(t *testing.T, s *shop, query string) (orderPage, time.Duration, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	resp, err := http.Get(s.url + "/api/orders?" + query)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/orders?%s: %d %v: %s", query, resp.StatusCode, err, body)
	}
	var p orderPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p, took, after.TotalAlloc - before.TotalAlloc
}

// TestListingACustomersHundredThousandOrders: the list used to load every order (and bind
// every id into one IN list: "too many SQL variables" past ~32,000). Page by page it takes
// bounded time and memory however many orders there are, and sees each exactly once.
func TestListingACustomersHundredThousandOrders(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 1_000)
	s.item("BOOK-1", 100, 1)
	const n = 100_000
	began := time.Now()
	insertOrders(t, s, cust, n)
	t.Logf("inserted %d orders in %s", n, time.Since(began))

	def := s.mustDo(200, "GET", "/api/orders?customer_id="+cust, "")
	if got := len(def["orders"].([]any)); got != 50 || def["next_cursor"] == nil {
		t.Fatalf("default page: %d orders, next_cursor %v; want 50 and a cursor", got, def["next_cursor"])
	}

	const limit = 200
	seen := make(map[string]bool, n)
	var slowest time.Duration
	var mostAlloc uint64
	var deepest string // the cursor of the last page
	query := fmt.Sprintf("customer_id=%s&limit=%d", cust, limit)
	want := n - 1 // newest first: o-099999 down to o-000000
	for pages := 0; ; pages++ {
		if pages > n/limit {
			t.Fatalf("more than %d pages", n/limit)
		}
		p, d, alloc := getPage(t, s, query)
		slowest, mostAlloc = max(slowest, d), max(mostAlloc, alloc)
		if len(p.Orders) > limit || (p.NextCursor != "" && len(p.Orders) != limit) {
			t.Fatalf("page %d has %d orders (next cursor %q)", pages, len(p.Orders), p.NextCursor)
		}
		for _, o := range p.Orders {
			if o.ID != fmt.Sprintf("o-%06d", want) || seen[o.ID] || len(o.Lines) != 1 {
				t.Fatalf("page %d: got %s (lines %d), want o-%06d next", pages, o.ID, len(o.Lines), want)
			}
			seen[o.ID] = true
			want--
		}
		if p.NextCursor == "" {
			s.mustDo(200, "GET", "/api/orders?"+query, "") // the last page, checked against the document
			break
		}
		deepest = p.NextCursor
		query = fmt.Sprintf("customer_id=%s&limit=%d&cursor=%s", cust, limit, url.QueryEscape(p.NextCursor))
	}
	if len(seen) != n {
		t.Errorf("listed %d orders, want %d", len(seen), n)
	}
	// Generous bounds for a loaded machine and the race detector; the whole list in one go
	// took 0.5 s and 30 MB at 70,000 orders, and grew with every order.
	if slowest > 2*time.Second {
		t.Errorf("slowest page took %s", slowest)
	}
	if mostAlloc > 16<<20 {
		t.Errorf("a page allocated %d MB", mostAlloc>>20)
	}
	// A page deep in the list costs what the first page costs: no page reads the ones
	// before it (as OFFSET, or a keyset the index cannot use, would). One-order pages make
	// the difference plain: reading 100,000 rows to skip them dwarfs serving one.
	var head, tail []time.Duration
	for range 15 {
		_, d, _ := getPage(t, s, fmt.Sprintf("customer_id=%s&limit=1", cust))
		head = append(head, d)
		_, d, _ = getPage(t, s, fmt.Sprintf("customer_id=%s&limit=1&cursor=%s", cust, url.QueryEscape(deepest)))
		tail = append(tail, d)
	}
	first, last := median(head), median(tail)
	if last > 3*first+5*time.Millisecond {
		t.Errorf("a page at the end of the list took %s (median), the first %s: pages cost more the deeper they are", last, first)
	}
	t.Logf("%d orders in pages of %d: slowest page %s, most allocated by one page %d KB; one-order page at the start %s, at the end %s",
		n, limit, slowest, mostAlloc>>10, first, last)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestListsArePaged(t *testing.T) {
	s := newShop(t)
	for _, sku := range []string{"E-1", "A-1", "C-1", "B-1", "D-1"} {
		s.item(sku, 100, 1)
	}
	var skus []string
	query := "/api/inventory/items?limit=2"
	for range 10 {
		p := s.mustDo(200, "GET", query, "")
		for _, it := range p["items"].([]any) {
			skus = append(skus, it.(map[string]any)["sku"].(string))
		}
		next, _ := p["next_cursor"].(string)
		if next == "" {
			break
		}
		if len(skus) == 2 {
			s.item("AA-1", 100, 1) // added to a page already read: the next pages do not shift
		}
		query = "/api/inventory/items?limit=2&cursor=" + url.QueryEscape(next)
	}
	if got := strings.Join(skus, ","); got != "A-1,B-1,C-1,D-1,E-1" {
		t.Errorf("items by page: %s", got)
	}

	ids := map[string]bool{}
	for _, e := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		ids[s.customer(e, 1)] = true
	}
	first := s.mustDo(200, "GET", "/api/customers?limit=2", "")
	second := s.mustDo(200, "GET", "/api/customers?limit=2&cursor="+url.QueryEscape(first["next_cursor"].(string)), "")
	got := append(first["customers"].([]any), second["customers"].([]any)...)
	if len(got) != 3 || second["next_cursor"] != nil {
		t.Fatalf("customers by page: %v then %v", first, second)
	}
	for _, c := range got {
		delete(ids, c.(map[string]any)["id"].(string))
	}
	if len(ids) != 0 {
		t.Errorf("customers not listed: %v", ids)
	}

	for _, q := range []string{"/api/inventory/items?limit=0", "/api/inventory/items?limit=201", "/api/customers?limit=x"} {
		problemOf(t, s.do("GET", q, ""), 400, "invalid_request", "limit")
	}
	for _, q := range []string{"/api/inventory/items?cursor=bogus", "/api/orders?customer_id=c&cursor=bogus", "/api/customers?cursor=%21"} {
		problemOf(t, s.do("GET", q, ""), 400, "invalid_request", "cursor")
	}
}
