package monolith_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
	"github.com/ficus-project/ficus/platform/web"
)

// shop is a monolith on a real database (storetest.DSN: SQLite, or PostgreSQL under
// TestPostgres), served on loopback by the server every Ficus component runs (web.NewServer).
type shop struct {
	t   *testing.T
	m   *monolith.Monolith
	url string
	v   *contract.Validator

	mu sync.Mutex
	// served counts the documented operations that answered 2xx, by "METHOD /path".
	served map[string]int
}

var (
	validatorOnce sync.Once
	validator     *contract.Validator
	validatorErr  error
)

func newShop(t *testing.T) *shop {
	t.Helper()
	return newShopLogged(t, nil)
}

// newShopLogged is newShop with the monolith logging to logger.
func newShopLogged(t *testing.T, logger *slog.Logger) *shop {
	t.Helper()
	dir := t.TempDir()
	cfgYAML := "backends: { monolith: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: monolith }]\n" +
		"monolith: { database: '" + storetest.DSN(t) + "' }\n"
	cfg, err := config.Parse(filepath.Join(dir, "config.yaml"), []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	m, err := monolith.New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer(m.Handler(), web.ServerOptions{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		m.Close()
	})
	validatorOnce.Do(func() { validator, validatorErr = contract.NewValidator() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return &shop{t: t, m: m, url: "http://" + ln.Addr().String(), v: validator, served: map[string]int{}}
}

// response is one HTTP exchange's outcome.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return v
}

// do sends a request and checks the response against the OpenAPI document.
func (s *shop) do(method, path, body string, header ...string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.v.CheckResponse(context.Background(), req, resp.StatusCode, resp.Header, b); err != nil {
		s.t.Errorf("%s %s: response breaks the contract: %v", method, path, err)
	}
	if op, err := s.v.Operation(req); err == nil && resp.StatusCode < 300 {
		s.mu.Lock()
		s.served[op]++
		s.mu.Unlock()
	}
	return response{resp.StatusCode, resp.Header, b}
}

// mustDo is do that expects a status.
func (s *shop) mustDo(want int, method, path, body string, header ...string) map[string]any {
	s.t.Helper()
	r := s.do(method, path, body, header...)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r.json(s.t)
}

func (s *shop) customer(email string, limit int) string {
	s.t.Helper()
	c := s.mustDo(201, "POST", "/api/customers", `{"name":"Test","email":"`+email+`","credit_limit_cents":`+itoa(limit)+`}`)
	return c["id"].(string)
}

func (s *shop) item(sku string, price, onHand int) {
	s.t.Helper()
	s.mustDo(201, "POST", "/api/inventory/items", `{"sku":"`+sku+`","name":"Thing","price_cents":`+itoa(price)+`,"on_hand":`+itoa(onHand)+`}`)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func orderBody(customer, sku string, qty int) string {
	return `{"customer_id":"` + customer + `","lines":[{"sku":"` + sku + `","quantity":` + itoa(qty) + `}]}`
}

func TestPlaceOrderHappyPath(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 100_000)
	s.item("BOOK-1", 1_500, 10)
	s.item("MUG-1", 700, 5)

	o := s.mustDo(201, "POST", "/api/orders", `{"customer_id":"`+cust+`","lines":[{"sku":"MUG-1","quantity":2},{"sku":"BOOK-1","quantity":3}]}`)
	if o["total_cents"].(float64) != 3*1_500+2*700 || o["status"] != "placed" {
		t.Fatalf("order = %v", o)
	}
	id := o["id"].(string)
	book := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	if book["on_hand"].(float64) != 7 || book["reserved"].(float64) != 0 || book["available"].(float64) != 7 {
		t.Errorf("stock after sale = %v", book)
	}
	pay := s.mustDo(200, "GET", "/api/payments/"+o["payment_id"].(string), "")
	if pay["amount_cents"].(float64) != 5_900 || pay["status"] != "captured" || pay["reference"] != id {
		t.Errorf("payment = %v", pay)
	}
	got := s.mustDo(200, "GET", "/api/orders/"+id, "")
	if len(got["lines"].([]any)) != 2 {
		t.Errorf("order lines = %v", got["lines"])
	}
	list := s.mustDo(200, "GET", "/api/orders?customer_id="+cust, "")
	if len(list["orders"].([]any)) != 1 {
		t.Errorf("orders by customer = %v", list)
	}

	c := s.mustDo(200, "POST", "/api/orders/"+id+"/cancel", "")
	if c["status"] != "cancelled" || c["cancelled_at"] == nil {
		t.Errorf("cancelled order = %v", c)
	}
	if b := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); b["on_hand"].(float64) != 10 {
		t.Errorf("cancel did not return stock: %v", b)
	}
	if p := s.mustDo(200, "GET", "/api/payments/"+o["payment_id"].(string), ""); p["status"] != "refunded" {
		t.Errorf("cancel did not refund: %v", p)
	}
	// Cancelling twice changes nothing.
	s.mustDo(200, "POST", "/api/orders/"+id+"/cancel", "")
	if b := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); b["on_hand"].(float64) != 10 {
		t.Errorf("second cancel returned stock again: %v", b)
	}
}

func TestErrors(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 10_000)
	decliner := s.customer("bob@decline.test", 10_000)
	poor := s.customer("poor@example.com", 1_000)
	s.item("BOOK-1", 1_500, 3)
	big := `{"name":"` + strings.Repeat("x", 1<<20) + `","email":"a@b","credit_limit_cents":1}`

	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		contentType string
		status      int
		code        string
		field       string
	}{
		{"malformed json", "POST", "/api/orders", `{"customer_id":`, "", 400, "malformed_json", ""},
		{"trailing data", "POST", "/api/customers", `{"name":"a","email":"a@b","credit_limit_cents":1} {}`, "", 400, "malformed_json", ""},
		{"unknown field", "POST", "/api/orders", `{"customer_id":"x","lines":[],"coupon":"FREE"}`, "", 400, "invalid_request", "coupon"},
		{"wrong type", "POST", "/api/inventory/items", `{"sku":"A","name":"a","price_cents":"ten","on_hand":1}`, "", 400, "invalid_request", "price_cents"},
		{"missing field", "POST", "/api/customers", `{"name":"a","email":"a@b"}`, "", 400, "invalid_request", "credit_limit_cents"},
		{"negative quantity", "POST", "/api/orders", orderBody(cust, "BOOK-1", -1), "", 400, "invalid_request", "lines[0].quantity"},
		{"zero quantity", "POST", "/api/orders", orderBody(cust, "BOOK-1", 0), "", 400, "invalid_request", "lines[0].quantity"},
		{"no lines", "POST", "/api/orders", `{"customer_id":"` + cust + `","lines":[]}`, "", 400, "invalid_request", "lines"},
		{"duplicate sku", "POST", "/api/orders", `{"customer_id":"` + cust + `","lines":[{"sku":"BOOK-1","quantity":1},{"sku":"BOOK-1","quantity":1}]}`, "", 400, "invalid_request", "lines[1].sku"},
		{"negative price", "POST", "/api/inventory/items", `{"sku":"A","name":"a","price_cents":-1,"on_hand":1}`, "", 400, "invalid_request", "price_cents"},
		{"bad sku", "POST", "/api/inventory/items", `{"sku":"a b","name":"a","price_cents":1,"on_hand":1}`, "", 400, "invalid_request", "sku"},
		{"negative restock", "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":-5}`, "", 400, "invalid_request", "quantity"},
		{"zero charge", "POST", "/api/payments", `{"customer_id":"` + cust + `","amount_cents":0,"reference":"r"}`, "", 400, "invalid_request", "amount_cents"},
		{"orders without customer", "GET", "/api/orders", "", "", 400, "invalid_request", "customer_id"},
		{"wrong content type", "POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "text/plain", 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/api/customers", `{}`, "-", 415, "unsupported_media_type", ""},
		{"oversize body", "POST", "/api/customers", big, "", 413, "body_too_large", ""},
		{"unknown customer", "GET", "/api/customers/nope", "", "", 404, "customer_not_found", ""},
		{"unknown item", "GET", "/api/inventory/items/NOPE", "", "", 404, "item_not_found", ""},
		{"unknown order", "GET", "/api/orders/nope", "", "", 404, "order_not_found", ""},
		{"unknown payment", "GET", "/api/payments/nope", "", "", 404, "payment_not_found", ""},
		{"cancel unknown order", "POST", "/api/orders/nope/cancel", "", "", 404, "order_not_found", ""},
		{"order for unknown customer", "POST", "/api/orders", orderBody("nope", "BOOK-1", 1), "", 404, "customer_not_found", ""},
		{"order of unknown item", "POST", "/api/orders", orderBody(cust, "NOPE", 1), "", 404, "item_not_found", ""},
		{"restock unknown item", "POST", "/api/inventory/items/NOPE/restock", `{"quantity":1}`, "", 404, "item_not_found", ""},
		{"insufficient stock", "POST", "/api/orders", orderBody(cust, "BOOK-1", 4), "", 409, "insufficient_stock", ""},
		{"duplicate sku item", "POST", "/api/inventory/items", `{"sku":"BOOK-1","name":"a","price_cents":1,"on_hand":1}`, "", 409, "sku_taken", ""},
		{"duplicate email", "POST", "/api/customers", `{"name":"a","email":"ADA@example.com","credit_limit_cents":1}`, "", 409, "email_taken", ""},
		{"order over credit limit", "POST", "/api/orders", orderBody(poor, "BOOK-1", 1), "", 402, "payment_declined", ""},
		{"declined card", "POST", "/api/orders", orderBody(decliner, "BOOK-1", 1), "", 402, "payment_declined", ""},
		{"credit exceeded", "POST", "/api/payments", `{"customer_id":"` + cust + `","amount_cents":10001,"reference":"r"}`, "", 402, "payment_declined", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.contentType {
			case "":
				if tt.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
			case "-":
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type %q, want application/problem+json", ct)
			}
			var p struct {
				Type, Title, Code string
				Status            int
				Errors            []struct{ Field, Message string }
			}
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("problem body: %v: %s", err, body)
			}
			if p.Code != tt.code || p.Status != tt.status || p.Type == "" || p.Title == "" {
				t.Errorf("problem = %+v, want code %s", p, tt.code)
			}
			if tt.field != "" {
				found := false
				for _, e := range p.Errors {
					found = found || e.Field == tt.field
				}
				if !found {
					t.Errorf("no error for field %q in %s", tt.field, body)
				}
			}
			if err := s.v.CheckResponse(context.Background(), req, resp.StatusCode, resp.Header, body); err != nil {
				t.Errorf("response breaks the contract: %v", err)
			}
		})
	}
	// None of the failures left a trace.
	if b := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); b["on_hand"].(float64) != 3 || b["reserved"].(float64) != 0 {
		t.Errorf("failed orders changed stock: %v", b)
	}
	if l := s.mustDo(200, "GET", "/api/orders?customer_id="+cust, ""); len(l["orders"].([]any)) != 0 {
		t.Errorf("failed orders were recorded: %v", l)
	}
}

func TestFailedOrderLeavesNoTrace(t *testing.T) {
	s := newShop(t)
	decliner := s.customer("bob@decline.test", 100_000)
	s.item("BOOK-1", 1_500, 10)
	ctx := context.Background()
	before := countRows(t, s, "ficus_outbox")

	r := s.do("POST", "/api/orders", orderBody(decliner, "BOOK-1", 2))
	if r.status != 402 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	it, err := s.m.Inventory.Item(ctx, "BOOK-1")
	if err != nil {
		t.Fatal(err)
	}
	if it.OnHand != 10 || it.Reserved != 0 || it.Version != 1 {
		t.Errorf("stock touched by a declined order: %+v", it)
	}
	for _, table := range []string{"orders_orders", "orders_lines", "payments_payments", "inventory_reservations", "inventory_reservation_lines"} {
		if n := countRows(t, s, table); n != 0 {
			t.Errorf("%s has %d rows after a declined order", table, n)
		}
	}
	if after := countRows(t, s, "ficus_outbox"); after != before {
		t.Errorf("a declined order left %d events in the outbox", after-before)
	}
}

func countRows(t *testing.T, s *shop, table string) int64 {
	t.Helper()
	var n int64
	if err := s.m.DB.Table(table).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConcurrentOrdersNeverOversell(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 100_000_000)
	s.item("HOT-1", 100, 50)

	const clients = 200
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	bodies := make(chan string, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Post(s.url+"/api/orders", "application/json", bytes.NewBufferString(orderBody(cust, "HOT-1", 1)))
			if err != nil {
				bodies <- err.Error()
				statuses <- 0
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
			bodies <- string(b)
		}()
	}
	close(start)
	wg.Wait()
	close(statuses)
	close(bodies)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	for b := range bodies {
		if strings.Contains(b, "locked") || strings.Contains(b, "busy") {
			t.Errorf("a database lock reached a client: %s", b)
		}
	}
	if count[201] != 50 || count[409] != 150 {
		t.Fatalf("statuses = %v, want 50×201 and 150×409", count)
	}
	it := s.mustDo(200, "GET", "/api/inventory/items/HOT-1", "")
	if it["on_hand"].(float64) != 0 || it["reserved"].(float64) != 0 {
		t.Errorf("stock = %v, want 0 on hand, 0 reserved", it)
	}
}

func TestModuleHandlesRefuseOtherModulesTables(t *testing.T) {
	s := newShop(t)
	inv := store.Handle(s.m.DB, "inventory")
	var n int64
	if err := inv.Table("orders_orders").Count(&n).Error; !errors.Is(err, store.ErrBoundary) {
		t.Errorf("inventory read orders' table: err = %v", err)
	}
	if err := inv.Exec("DELETE FROM payments_payments").Error; !errors.Is(err, store.ErrBoundary) {
		t.Errorf("inventory wrote payments' table: err = %v", err)
	}
	if err := inv.Table("inventory_items").Count(&n).Error; err != nil {
		t.Errorf("inventory refused its own table: %v", err)
	}
}

func TestIdempotentOrdersAndPayments(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 100_000)
	outage := s.customer("olga@outage.test", 100_000)
	s.item("BOOK-1", 1_500, 10)

	first := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 2), "Idempotency-Key", "order-1")
	again := s.do("POST", "/api/orders", orderBody(cust, "BOOK-1", 2), "Idempotency-Key", "order-1")
	if again.status != 201 || again.json(t)["id"] != first["id"] || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %s", again.status, again.body)
	}
	if it := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); it["on_hand"].(float64) != 8 {
		t.Errorf("a repeated order sold stock twice: %v", it)
	}
	r := s.do("POST", "/api/orders", orderBody(cust, "BOOK-1", 3), "Idempotency-Key", "order-1")
	if r.status != 422 || r.json(t)["code"] != "idempotency_key_reused" {
		t.Errorf("same key, other body: %d %s", r.status, r.body)
	}

	charge := `{"customer_id":"` + outage + `","amount_cents":100,"reference":"x"}`
	for i := 0; i < 2; i++ { // a 5xx does not burn the key: the retry runs again
		r := s.do("POST", "/api/payments", charge, "Idempotency-Key", "pay-1")
		if r.status != 503 || r.json(t)["code"] != "gateway_unavailable" || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	p1 := s.mustDo(201, "POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":100,"reference":"x"}`, "Idempotency-Key", "pay-2")
	p2 := s.mustDo(201, "POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":100,"reference":"x"}`, "Idempotency-Key", "pay-2")
	if p1["id"] != p2["id"] || countRows(t, s, "payments_payments") != 2 {
		t.Errorf("a repeated charge was captured twice: %v %v", p1["id"], p2["id"])
	}
}
