package monolith_test

import (
	"strconv"
	"testing"

	"github.com/ficus-project/ficus/platform/contract"
)

// problemOf checks r is a problem with status and code, naming field when field is set.
func problemOf(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	p := r.json(t)
	if p["code"] != code {
		t.Errorf("code %v, want %s: %s", p["code"], code, r.body)
	}
	if field == "" {
		return
	}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		if e.(map[string]any)["field"] == field {
			return
		}
	}
	t.Errorf("no error on field %q: %s", field, r.body)
}

func TestMoneyAndStockNeverOverflow(t *testing.T) {
	s := newShop(t)
	max := strconv.FormatInt(contract.MaxCents, 10)
	rich := s.customer("rich@example.com", int(contract.MaxCents))
	s.item("CHEAP-1", 256, 1_000)
	s.mustDo(201, "POST", "/api/inventory/items", `{"sku":"DEAR-1","name":"Dear","price_cents":`+max+`,"on_hand":1000000}`)

	// 72,057,594,037,927,937 × 256 cents wrapped to a total of 256 before.
	r := s.do("POST", "/api/orders", `{"customer_id":"`+rich+`","lines":[{"sku":"CHEAP-1","quantity":72057594037927937}]}`)
	problemOf(t, r, 400, "invalid_request", "lines[0].quantity")

	// Within every bound line by line, but the product wraps an int64: the client's lines
	// are at fault, not an amount_cents it never sent.
	r = s.do("POST", "/api/orders", orderBody(rich, "DEAR-1", contract.MaxLineQuantity))
	problemOf(t, r, 422, "limit_exceeded", "lines")
	// Two lines that fit alone but not together.
	s.mustDo(201, "POST", "/api/inventory/items", `{"sku":"DEAR-2","name":"Dear","price_cents":`+max+`,"on_hand":1}`)
	r = s.do("POST", "/api/orders", `{"customer_id":"`+rich+`","lines":[{"sku":"DEAR-1","quantity":1},{"sku":"DEAR-2","quantity":1}]}`)
	problemOf(t, r, 422, "limit_exceeded", "lines")
	if it := s.mustDo(200, "GET", "/api/inventory/items/DEAR-1", ""); it["reserved"].(float64) != 0 || it["version"].(float64) != 1 {
		t.Errorf("a refused order touched stock: %v", it)
	}
	// The largest total there is still goes through.
	o := s.mustDo(201, "POST", "/api/orders", orderBody(rich, "DEAR-1", 1))
	if o["total_cents"].(float64) != float64(contract.MaxCents) {
		t.Errorf("total %v, want %d", o["total_cents"], contract.MaxCents)
	}

	// Stock stays within 32 bits: at creation, and after a restock.
	r = s.do("POST", "/api/inventory/items", `{"sku":"HUGE-1","name":"Huge","price_cents":1,"on_hand":3000000000}`)
	problemOf(t, r, 400, "invalid_request", "on_hand")
	s.item("FULL-1", 1, contract.MaxStock-1)
	r = s.do("POST", "/api/inventory/items/FULL-1/restock", `{"quantity":2}`)
	problemOf(t, r, 422, "limit_exceeded", "quantity")
	r = s.do("POST", "/api/inventory/items/FULL-1/restock", `{"quantity":9223372036854775807}`)
	problemOf(t, r, 400, "invalid_request", "quantity")
	if it := s.mustDo(200, "GET", "/api/inventory/items/FULL-1", ""); it["on_hand"].(float64) != contract.MaxStock-1 {
		t.Errorf("a refused restock changed stock: %v", it)
	}
	s.mustDo(200, "POST", "/api/inventory/items/FULL-1/restock", `{"quantity":1}`)
	s.mustDo(200, "GET", "/api/inventory/items", "") // the list still validates against the document

	for _, tt := range []struct{ method, path, body, field string }{
		{"POST", "/api/inventory/items", `{"sku":"P-1","name":"p","price_cents":9007199254740992,"on_hand":1}`, "price_cents"},
		{"POST", "/api/customers", `{"name":"a","email":"x@y","credit_limit_cents":9007199254740992}`, "credit_limit_cents"},
		{"PUT", "/api/customers/" + rich + "/credit-limit", `{"credit_limit_cents":9007199254740992}`, "credit_limit_cents"},
		{"POST", "/api/payments", `{"customer_id":"` + rich + `","amount_cents":9007199254740992,"reference":"r"}`, "amount_cents"},
		{"POST", "/api/inventory/reservations", `{"order_id":"o","lines":[{"sku":"CHEAP-1","quantity":1000001}]}`, "lines[0].quantity"},
	} {
		problemOf(t, s.do(tt.method, tt.path, tt.body), 400, "invalid_request", tt.field)
	}
}

// TestFreeOrder: an order whose total is 0 charges nothing, and cancelling it refunds
// nothing, rather than failing on a charge of 0 cents the client never asked for.
func TestFreeOrder(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 0)
	s.item("FREE-1", 0, 5)
	o := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "FREE-1", 2))
	if o["total_cents"].(float64) != 0 || o["payment_id"] != "" {
		t.Errorf("free order = %v", o)
	}
	s.mustDo(200, "POST", "/api/orders/"+o["id"].(string)+"/cancel", "")
	if it := s.mustDo(200, "GET", "/api/inventory/items/FREE-1", ""); it["on_hand"].(float64) != 5 {
		t.Errorf("cancelling a free order did not return its stock: %v", it)
	}
}

// TestStrictBodies sends, through the real server, what encoding/json alone accepted.
func TestStrictBodies(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 1_000_000)
	s.item("BOOK-1", 100, 10)
	for _, tt := range []struct {
		name, path, body, code, field string
	}{
		{"duplicate key", "/api/orders", `{"customer_id":"` + cust + `","lines":[{"sku":"BOOK-1","quantity":-5,"quantity":1}]}`, "invalid_request", "lines[0].quantity"},
		{"field name in another case", "/api/orders", `{"Customer_ID":"` + cust + `","lines":[{"sku":"BOOK-1","quantity":1}]}`, "invalid_request", "Customer_ID"},
		{"upper-case field", "/api/orders", `{"customer_id":"` + cust + `","LINES":[{"sku":"BOOK-1","quantity":1}]}`, "invalid_request", "LINES"},
		{"NUL in a name", "/api/customers", `{"name":"Ada\u0000","email":"nul@example.com","credit_limit_cents":1}`, "invalid_request", "name"},
		{"invalid UTF-8", "/api/customers", "{\"name\":\"Ada\xff\",\"email\":\"utf@example.com\",\"credit_limit_cents\":1}", "malformed_json", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			problemOf(t, s.do("POST", tt.path, tt.body), 400, tt.code, tt.field)
		})
	}
	r := s.do("POST", "/api/orders", orderBody(cust, "BOOK-1", 1), "Content-Type", "application/problem+json")
	problemOf(t, r, 415, "unsupported_media_type", "")
	if l := s.mustDo(200, "GET", "/api/orders?customer_id="+cust, ""); len(l["orders"].([]any)) != 0 {
		t.Errorf("a refused body placed an order: %v", l)
	}
	if l := s.mustDo(200, "GET", "/api/customers", ""); len(l["customers"].([]any)) != 1 {
		t.Errorf("a refused body registered a customer: %v", l)
	}
}
