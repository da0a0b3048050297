package monolith_test

import (
	"strings"
	"testing"
)

// TestEveryOperationAnswersAsDocumented drives every documented operation to a success
// through the real server; shop.do validates each response against openapi.yaml. An
// operation no test reaches could drift from the document unseen (as the reservation
// endpoints once did, sending unit prices the document forbade).
func TestEveryOperationAnswersAsDocumented(t *testing.T) {
	s := newShop(t)
	s.mustDo(200, "GET", "/healthz", "")
	s.mustDo(200, "GET", "/readyz", "")
	cust := s.customer("ada@example.com", 1_000_000)
	s.mustDo(200, "GET", "/api/customers/"+cust, "")
	s.mustDo(200, "GET", "/api/customers", "")
	s.mustDo(200, "GET", "/api/customers?email=ada@example.com", "")
	s.mustDo(200, "PUT", "/api/customers/"+cust+"/credit-limit", `{"credit_limit_cents":2000000}`)

	s.item("BOOK-1", 1_500, 10)
	s.mustDo(200, "GET", "/api/inventory/items", "")
	s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	s.mustDo(200, "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":5}`)
	r := s.mustDo(201, "POST", "/api/inventory/reservations", `{"order_id":"ext-1","lines":[{"sku":"BOOK-1","quantity":2}]}`)
	if line := r["lines"].([]any)[0].(map[string]any); line["unit_price_cents"].(float64) != 1_500 {
		t.Errorf("reservation line = %v, want its unit price", line)
	}
	s.mustDo(200, "GET", "/api/inventory/reservations/ext-1", "")
	s.mustDo(200, "POST", "/api/inventory/reservations/ext-1/commit", "")
	s.mustDo(200, "POST", "/api/inventory/reservations/ext-1/return", "")
	s.mustDo(201, "POST", "/api/inventory/reservations", `{"order_id":"ext-2","lines":[{"sku":"BOOK-1","quantity":1}]}`)
	s.mustDo(200, "POST", "/api/inventory/reservations/ext-2/release", "")

	p := s.mustDo(201, "POST", "/api/payments", `{"customer_id":"`+cust+`","amount_cents":100,"reference":"r"}`)
	s.mustDo(200, "GET", "/api/payments/"+p["id"].(string), "")
	s.mustDo(200, "POST", "/api/payments/"+p["id"].(string)+"/refund", "")

	o := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 1))
	s.mustDo(200, "GET", "/api/orders/"+o["id"].(string), "")
	s.mustDo(200, "GET", "/api/orders/"+o["id"].(string)+"/details", "")
	s.mustDo(200, "GET", "/api/orders?customer_id="+cust, "")
	s.mustDo(200, "POST", "/api/orders/"+o["id"].(string)+"/cancel", "")

	for _, op := range s.v.Operations() {
		if s.served[op] == 0 {
			t.Errorf("%s was never exercised to a success", op)
		}
	}
}

// TestTimestampsAreUTCMilliseconds: every timestamp the shop sends has one format, whatever
// clock or storage it came from (items used to show nanoseconds, others milliseconds).
func TestTimestampsAreUTCMilliseconds(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 1_000_000)
	s.item("BOOK-1", 1_500, 10)
	o := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 1))
	c := s.mustDo(200, "POST", "/api/orders/"+o["id"].(string)+"/cancel", "")
	p := s.mustDo(200, "GET", "/api/payments/"+o["payment_id"].(string), "")
	it := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	cu := s.mustDo(200, "GET", "/api/customers/"+cust, "")
	for _, ts := range []any{o["created_at"], c["cancelled_at"], p["created_at"], p["refunded_at"], it["updated_at"], cu["created_at"]} {
		str, _ := ts.(string)
		if len(str) != len("2024-05-01T10:00:00.000Z") || !strings.HasSuffix(str, "Z") || str[19] != '.' {
			t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", ts)
		}
	}
}
