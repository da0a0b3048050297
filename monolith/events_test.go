package monolith_test

import (
	"context"
	"testing"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
)

// TestEmittedEventsMatchTheirSchemas drives every state change the monolith emits an event
// for and checks each outbox event against its documented schema.
func TestEmittedEventsMatchTheirSchemas(t *testing.T) {
	s := newShop(t)
	cust := s.customer("ada@example.com", 100_000)
	s.mustDo(200, "PUT", "/api/customers/"+cust+"/credit-limit", `{"credit_limit_cents":200000}`)
	s.item("BOOK-1", 1_500, 10)
	s.mustDo(200, "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":5}`)
	o := s.mustDo(201, "POST", "/api/orders", orderBody(cust, "BOOK-1", 2))
	s.mustDo(200, "POST", "/api/orders/"+o["id"].(string)+"/cancel", "")

	schemas, err := contract.LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	evs, err := outbox.List(context.Background(), s.m.DB, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.Type]++
		if err := schemas.Validate(e); err != nil {
			t.Errorf("emitted event breaks its schema: %v", err)
		}
	}
	for _, typ := range []string{
		contract.TypeCustomerRegistered, contract.TypeCustomerCreditLimitChange, contract.TypeStockChanged,
		contract.TypeOrderPlaced, contract.TypeOrderCancelled, contract.TypePaymentCaptured, contract.TypePaymentRefunded,
	} {
		if seen[typ] == 0 {
			t.Errorf("no %s event emitted (saw %v)", typ, seen)
		}
	}
	// stock_changed carries absolute figures and a per-SKU version that only grows.
	var last int64
	for _, e := range evs {
		if e.Type != contract.TypeStockChanged {
			continue
		}
		var sc contract.StockChanged
		if err := e.Decode(&sc); err != nil {
			t.Fatal(err)
		}
		if sc.Version <= last {
			t.Errorf("stock_changed version went from %d to %d", last, sc.Version)
		}
		last = sc.Version
	}
	item := s.mustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	if got := lastStock(t, evs); got.OnHand != int(item["on_hand"].(float64)) || got.Version != int64(item["version"].(float64)) {
		t.Errorf("last stock_changed %+v does not match the item %v", got, item)
	}
}

func lastStock(t *testing.T, evs []event.Event) contract.StockChanged {
	t.Helper()
	var sc contract.StockChanged
	for _, e := range evs {
		if e.Type == contract.TypeStockChanged {
			if err := e.Decode(&sc); err != nil {
				t.Fatal(err)
			}
		}
	}
	return sc
}
