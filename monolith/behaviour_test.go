package monolith_test

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficus-project/ficus/monolith"
)

// TestReleasingSoldStockIsRefused: release ends a hold; it must not put sold stock back on
// hand (it did, with 200). Return undoes a sale, and is what cancelling an order uses.
func TestReleasingSoldStockIsRefused(t *testing.T) {
	s := newShop(t)
	s.item("BOOK-1", 1_500, 10)
	stock := func() (onHand, reserved float64) {
		it := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
		return it["on_hand"].(float64), it["reserved"].(float64)
	}
	s.mustDo(201, "POST", "/api/inventory/reservations", `{"order_id":"o-1","lines":[{"sku":"BOOK-1","quantity":3}]}`)
	s.mustDo(200, "POST", "/api/inventory/reservations/o-1/commit", "")
	if on, res := stock(); on != 7 || res != 0 {
		t.Fatalf("after the sale: %v on hand, %v reserved", on, res)
	}

	problemOf(t, s.do("POST", "/api/inventory/reservations/o-1/release", ""), 409, "reservation_committed", "")
	if on, _ := stock(); on != 7 {
		t.Fatalf("releasing a committed reservation put %v on hand, want 7", on)
	}

	r := s.mustDo(200, "POST", "/api/inventory/reservations/o-1/return", "")
	if r["state"] != "returned" {
		t.Errorf("state %v, want returned", r["state"])
	}
	s.mustDo(200, "POST", "/api/inventory/reservations/o-1/return", "") // a no-op
	if on, _ := stock(); on != 10 {
		t.Errorf("after the return: %v on hand, want 10 (returned once)", on)
	}
	problemOf(t, s.do("POST", "/api/inventory/reservations/o-1/release", ""), 409, "reservation_state", "")
	problemOf(t, s.do("POST", "/api/inventory/reservations/o-1/commit", ""), 409, "reservation_state", "")

	// A hold is released, never returned.
	s.mustDo(201, "POST", "/api/inventory/reservations", `{"order_id":"o-2","lines":[{"sku":"BOOK-1","quantity":2}]}`)
	problemOf(t, s.do("POST", "/api/inventory/reservations/o-2/return", ""), 409, "reservation_state", "")
	s.mustDo(200, "POST", "/api/inventory/reservations/o-2/release", "")
	s.mustDo(200, "POST", "/api/inventory/reservations/o-2/release", "") // a no-op
	if on, res := stock(); on != 10 || res != 0 {
		t.Errorf("after the release: %v on hand, %v reserved", on, res)
	}
}

// TestDeclinedKeyedOrderHoldsNoStock: with an Idempotency-Key the order runs inside the
// key's transaction and its 402 is recorded, so only the rollback of the handler's writes
// keeps the declined order's reservation from being committed with it.
func TestDeclinedKeyedOrderHoldsNoStock(t *testing.T) {
	s := newShop(t)
	decliner := s.customer("bob@decline.test", 100_000)
	s.item("BOOK-1", 1_500, 10)
	for i := range 2 { // the second is the replay of the first
		r := s.do("POST", "/api/orders", orderBody(decliner, "BOOK-1", 2), "Idempotency-Key", "declined-1")
		problemOf(t, r, 402, "payment_declined", "")
		if i == 1 && r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("the repeat was not a replay: %v", r.header)
		}
	}
	it := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	if it["on_hand"].(float64) != 10 || it["reserved"].(float64) != 0 || it["version"].(float64) != 1 {
		t.Errorf("a declined keyed order left stock held: %v", it)
	}
	for _, table := range []string{"inventory_reservations", "inventory_reservation_lines", "payments_payments", "orders_orders"} {
		if n := countRows(t, s, table); n != 0 {
			t.Errorf("%s has %d rows after a declined keyed order", table, n)
		}
	}
}

// TestCreditCountsMoneyOwedAndRefundsGiveItBack: the credit check counts captured,
// unrefunded payments; a cancellation or a refund gives the credit back.
func TestCreditCountsMoneyOwedAndRefundsGiveItBack(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 10_000)
	s.item("BOOK-1", 6_000, 10)

	first := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "Idempotency-Key", "c-1")
	// 6,000 fits the 10,000 limit alone, not on top of the 6,000 owed.
	problemOf(t, s.do("POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "Idempotency-Key", "c-2"), 402, "payment_declined", "")
	problemOf(t, s.do("POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":4001,"reference":"r"}`), 402, "payment_declined", "")

	s.mustDo(200, "POST", "/api/orders/"+first["id"].(string)+"/cancel", "")
	second := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "Idempotency-Key", "c-3")
	if second["total_cents"].(float64) != 6_000 {
		t.Fatalf("second order = %v", second)
	}
	problemOf(t, s.do("POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":4001,"reference":"r"}`), 402, "payment_declined", "")
	s.mustDo(200, "POST", "/api/payments/"+second["payment_id"].(string)+"/refund", "")
	s.mustDo(201, "POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":10000,"reference":"all of it"}`)
	problemOf(t, s.do("POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":1,"reference":"r"}`), 402, "payment_declined", "")
}

// syncBuffer is a log sink the server's goroutines write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or a short deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRequestIDLoggedForKeyedRequests: the idempotency middleware buffers the response, and
// the error log of a keyed request's 5xx (the one the facade retries) read the request id
// from that buffer's headers, where it never is: request_id="".
func TestRequestIDLoggedForKeyedRequests(t *testing.T) {
	var logs syncBuffer
	s := newShopLogged(t, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cust := s.customer("ada@example.com", 100_000)
	outage := s.customer("olga@outage.test", 100_000)
	s.item("BOOK-1", 100, 10)

	r := s.do("POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "Idempotency-Key", "k-1", "X-Request-Id", "rid-keyed-201")
	if r.status != 201 || r.header.Get("X-Request-Id") != "rid-keyed-201" {
		t.Fatalf("%d, X-Request-Id %q", r.status, r.header.Get("X-Request-Id"))
	}
	r = s.do("POST", "/api/orders", orderBody(outage, "BOOK-1", 1), "Idempotency-Key", "k-2", "X-Request-Id", "rid-keyed-503")
	if r.status != 503 {
		t.Fatalf("status %d", r.status)
	}
	waitFor(t, "both requests' log lines", func() bool {
		l := logs.String()
		return strings.Contains(l, "request_id=rid-keyed-201") && strings.Contains(l, "status=503 ") && strings.Contains(l, "request_id=rid-keyed-503")
	})
	if strings.Contains(logs.String(), `request_id=""`) {
		t.Errorf("a log line lost its request id:\n%s", logs.String())
	}
	// A request without an id gets one, and its log line carries it.
	r = s.do("GET", "/api/inventory/items/BOOK-1", "")
	id := r.header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("no X-Request-Id made for a request without one")
	}
	waitFor(t, "the log line of the request without an id", func() bool { return strings.Contains(logs.String(), "request_id="+id) })
}

// TestNoPanickingIDsOnRequestPaths: a failing random source must be an error, not a panic
// (the services' id sources are tested with a failing one); this keeps uuid.Must and
// friends from coming back anywhere in the monolith's code.
func TestNoPanickingIDsOnRequestPaths(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if ok && strings.HasPrefix(sel.Sel.Name, "Must") {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "uuid" {
					t.Errorf("%s: uuid.%s panics on a request path; return the error", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSeedNamesEveryDemoCustomer: the banner and README show every seeded customer, found
// by id or by email.
func TestSeedNamesEveryDemoCustomer(t *testing.T) {
	s := newShop(t)
	demo, err := s.m.Seed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !demo.Seeded || len(demo.Customers) != len(monolith.DemoCustomers()) || demo.CustomerID == "" {
		t.Fatalf("demo = %+v", demo)
	}
	for _, c := range demo.Customers {
		if c.ID == "" || c.Demonstrates == "" {
			t.Errorf("demo customer %+v", c)
		}
		// Looked up as a person might type it: the lookup normalises like registration.
		l := s.mustDo(200, "GET", "/api/customers?email="+strings.ToUpper(c.Email), "")
		found := l["customers"].([]any)
		if len(found) != 1 || found[0].(map[string]any)["id"] != c.ID {
			t.Errorf("lookup of %s = %v, want %s", c.Email, found, c.ID)
		}
	}
	again, err := s.m.Seed(context.Background())
	if err != nil || again.Seeded || len(again.Customers) != len(demo.Customers) {
		t.Errorf("second seed = %+v, %v", again, err)
	}
	if l := s.mustDo(200, "GET", "/api/customers?email=nobody@example.com", ""); len(l["customers"].([]any)) != 0 {
		t.Errorf("unknown email found %v", l)
	}
	problemOf(t, s.do("GET", "/api/customers?email=", ""), 400, "invalid_request", "email")
}
