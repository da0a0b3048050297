package shop_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/config"
)

// people are the customers of a saga test, by what they demonstrate.
type people struct{ ada, bob, olga string }

// seed registers the customers in the monolith, adds the items where inventory lives, and
// waits for the payments service to know the customers.
func seed(t *testing.T, s *shop.Shop, remote []string) people {
	t.Helper()
	var p people
	for _, c := range []struct {
		id    *string
		email string
	}{{&p.ada, "ada@saga.test"}, {&p.bob, "bob@decline.test"}, {&p.olga, "olga@outage.test"}} {
		body := fmt.Sprintf(`{"name":"%s","email":"%s","credit_limit_cents":1000000}`, strings.Split(c.email, "@")[0], c.email)
		*c.id = mustSend(t, 201, "POST", s.URL+"/api/customers", body).json(t)["id"].(string)
	}
	items := s.ItemsURL(remote)
	mustSend(t, 201, "POST", items+"/api/inventory/items", `{"sku":"BOOK","name":"Book","price_cents":1500,"on_hand":10}`)
	mustSend(t, 201, "POST", items+"/api/inventory/items", `{"sku":"LAMP","name":"Lamp","price_cents":25000,"on_hand":1}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.AwaitCustomers(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func orderBody(customer, sku string, qty int) string {
	return fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":%d}]}`, customer, sku, qty)
}

// stock returns an item's on_hand and reserved as its owner reports them.
func stock(t *testing.T, itemsURL, sku string) (onHand, reserved float64) {
	t.Helper()
	it := mustSend(t, 200, "GET", itemsURL+"/api/inventory/items/"+sku, "").json(t)
	return it["on_hand"].(float64), it["reserved"].(float64)
}

func sagaOf(t *testing.T, order map[string]any) map[string]any {
	t.Helper()
	sg, ok := order["saga"].(map[string]any)
	if !ok {
		t.Fatalf("the order shows no saga: %v", order)
	}
	return sg
}

func stepOf(sg map[string]any, name string) map[string]any {
	steps, _ := sg["steps"].([]any)
	var last map[string]any
	for _, st := range steps {
		if m := st.(map[string]any); m["name"] == name {
			last = m
		}
	}
	return last
}

// TestSagaPlacesOrdersAcrossTheServices: with inventory and payments remote, an order is
// placed by the saga — the stock sold in the inventory service, the payment captured in the
// payments service — and answered 201 as in one transaction; a refused step (a declined
// card, a gateway outage, too little stock) is answered as the module answers it, with its
// compensations done first (nothing held, nothing taken), and the failed order is not in the
// customer's list; a cancellation returns the stock and refunds the payment; the order's
// details come from both services.
func TestSagaPlacesOrdersAcrossTheServices(t *testing.T) {
	remote := []string{"inventory", "payments"}
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 10 * time.Second})
	p := seed(t, s, remote)

	placed := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 2), "Idempotency-Key", "ada-1")
	o := placed.json(t)
	if o["status"] != "placed" || o["total_cents"].(float64) != 3000 || placed.header.Get("Location") != "/api/orders/"+o["id"].(string) {
		t.Fatalf("placed: %s %v", placed.body, placed.header)
	}
	sg := sagaOf(t, o)
	for _, step := range []string{"reserve", "charge", "confirm"} {
		if st := stepOf(sg, step); st == nil || st["status"] != "done" {
			t.Errorf("step %s: %v", step, st)
		}
	}
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 8 || res != 0 {
		t.Errorf("the inventory service has %v on hand, %v reserved; want 8 and 0", on, res)
	}
	pay := mustSend(t, 200, "GET", s.PaymentsURL+"/api/payments/"+o["payment_id"].(string), "").json(t)
	if pay["status"] != "captured" || pay["reference"] != o["id"] || pay["amount_cents"].(float64) != 3000 {
		t.Errorf("the payments service has %v", pay)
	}
	again := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 2), "Idempotency-Key", "ada-1")
	if again.header.Get("Idempotent-Replayed") != "true" || again.json(t)["id"] != o["id"] {
		t.Errorf("the repeat with the key: %s", again.body)
	}

	declined := mustSend(t, 402, "POST", s.URL+"/api/orders", orderBody(p.bob, "BOOK", 1))
	if d := declined.json(t); d["code"] != "payment_declined" || d["detail"] != "payment declined: card declined" {
		t.Errorf("declined: %s", declined.body)
	}
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 8 || res != 0 {
		t.Errorf("after the decline the inventory service has %v on hand, %v reserved; want 8 and 0", on, res)
	}
	if list := mustSend(t, 200, "GET", s.URL+"/api/orders?customer_id="+p.bob, "").json(t); len(list["orders"].([]any)) != 0 {
		t.Errorf("a failed order is listed: %v", list)
	}
	cancelled, err := s.Monolith.Orders.Sagas(context.Background(), orders.SagaCancelled, "", 10)
	if err != nil || len(cancelled) != 1 || cancelled[0].Reason.Code != "payment_declined" {
		t.Fatalf("cancelled sagas: %v %+v", err, cancelled)
	}
	failed := mustSend(t, 200, "GET", s.URL+"/api/orders/"+cancelled[0].ID, "").json(t)
	if failed["status"] != "cancelled" || stepOf(sagaOf(t, failed), "release")["status"] != "done" {
		t.Errorf("the failed order reads %v", failed)
	}

	for range 2 {
		out := mustSend(t, 503, "POST", s.URL+"/api/orders", orderBody(p.olga, "BOOK", 1), "Idempotency-Key", "olga-1")
		if out.json(t)["code"] != "gateway_unavailable" || out.header.Get("Retry-After") != "1" || out.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("a gateway outage: %s %v", out.body, out.header)
		}
	}
	if out := mustSend(t, 409, "POST", s.URL+"/api/orders", orderBody(p.ada, "LAMP", 2)); out.json(t)["code"] != "insufficient_stock" {
		t.Errorf("too much: %s", out.body)
	}
	if out := mustSend(t, 404, "POST", s.URL+"/api/orders", orderBody(p.ada, "NOPE", 1)); out.json(t)["code"] != "item_not_found" {
		t.Errorf("no such item: %s", out.body)
	}
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 8 || res != 0 {
		t.Errorf("after the failures the inventory service has %v on hand, %v reserved; want 8 and 0", on, res)
	}

	details := mustSend(t, 200, "GET", s.URL+"/api/orders/"+o["id"].(string)+"/details", "").json(t)
	if details["payment"] == nil || details["reservation"] == nil || len(details["missing"].([]any)) != 0 {
		t.Errorf("details: %v", details)
	}

	c := mustSend(t, 200, "POST", s.URL+"/api/orders/"+o["id"].(string)+"/cancel", "").json(t)
	if c["status"] != "cancelled" || sagaOf(t, c)["kind"] != "cancel" {
		t.Errorf("cancelled: %v", c)
	}
	if on, _ := stock(t, s.InventoryURL, "BOOK"); on != 10 {
		t.Errorf("after the cancellation the inventory service has %v on hand, want 10", on)
	}
	if pay := mustSend(t, 200, "GET", s.PaymentsURL+"/api/payments/"+o["payment_id"].(string), "").json(t); pay["status"] != "refunded" {
		t.Errorf("after the cancellation the payment is %v", pay["status"])
	}
	mustSend(t, 200, "POST", s.URL+"/api/orders/"+o["id"].(string)+"/cancel", "")
}

// TestSagaWaitsForAServiceThatIsDown: with the inventory service down, placing an order is
// answered 202 with a Location to poll; the order is pending there, its saga retrying the
// reservation; once the service is back the saga finishes and the order is placed.
func TestSagaWaitsForAServiceThatIsDown(t *testing.T) {
	remote := []string{"inventory", "payments"}
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 300 * time.Millisecond,
		Backend: func(_ string, b *config.Backend) {
			b.Breaker = config.Breaker{ConsecutiveFailures: 3, OpenFor: config.Duration(200 * time.Millisecond)}
		},
		Saga: &orders.SagaOptions{Timeout: time.Minute, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	p := seed(t, s, remote)
	s.Stop("inventory")
	accepted := mustSend(t, 202, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 1))
	loc := accepted.header.Get("Location")
	o := accepted.json(t)
	if o["status"] != "pending" || loc != "/api/orders/"+o["id"].(string) || accepted.header.Get("Retry-After") == "" {
		t.Fatalf("accepted: %s %v", accepted.body, accepted.header)
	}
	waitFor(t, "the saga retrying the reservation", 10*time.Second, func() (bool, string) {
		a := mustSend(t, 200, "GET", s.URL+loc, "").json(t)
		st := stepOf(sagaOf(t, a), "reserve")
		return a["status"] == "pending" && st["attempts"].(float64) >= 2 && st["error"] != nil, fmt.Sprint(a)
	})
	if err := s.Restart("inventory"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the order placed once inventory is back", 15*time.Second, func() (bool, string) {
		a := mustSend(t, 200, "GET", s.URL+loc, "").json(t)
		return a["status"] == "placed", fmt.Sprint(a)
	})
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 9 || res != 0 {
		t.Errorf("the inventory service has %v on hand, %v reserved; want 9 and 0", on, res)
	}
}

// TestSagaTimeoutCompensates: with the payments service down for longer than the saga's
// timeout, the order is cancelled with the reason order_timeout and its stock released.
func TestSagaTimeoutCompensates(t *testing.T) {
	remote := []string{"inventory", "payments"}
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 100 * time.Millisecond,
		Saga: &orders.SagaOptions{Timeout: 700 * time.Millisecond, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}})
	p := seed(t, s, remote)
	s.Stop("payments")
	accepted := mustSend(t, 202, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 3))
	loc := accepted.header.Get("Location")
	var last map[string]any
	waitFor(t, "the saga timing out", 15*time.Second, func() (bool, string) {
		last = mustSend(t, 200, "GET", s.URL+loc, "").json(t)
		return last["status"] == "cancelled", fmt.Sprint(last)
	})
	sg := sagaOf(t, last)
	if reason := sg["reason"].(map[string]any); reason["code"] != "order_timeout" || !strings.Contains(reason["detail"].(string), "charge") {
		t.Errorf("reason %v, want order_timeout naming the charge", reason)
	}
	if st := stepOf(sg, "release"); st["status"] != "done" {
		t.Errorf("release: %v", st)
	}
	if st := stepOf(sg, "refund"); st["status"] != "skipped" {
		// Every charge attempt was refused a connection: none can have been captured.
		t.Errorf("refund: %v, want skipped", st)
	}
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 10 || res != 0 {
		t.Errorf("the inventory service has %v on hand, %v reserved; want 10 and 0", on, res)
	}
}

// TestChargeCompletesOnThePaymentEvent: when every answer to the charge is lost (the
// payments service captures, the connection drops before the answer), the saga's charge
// step completes on the payment_captured event, consumed through the monolith's inbox.
func TestChargeCompletesOnThePaymentEvent(t *testing.T) {
	remote := []string{"inventory", "payments"}
	var dropped atomic.Int64
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 10 * time.Second,
		Saga: &orders.SagaOptions{Timeout: time.Minute, Backoff: 200 * time.Millisecond, MaxBackoff: time.Second},
		Wrap: func(service string, h http.Handler) http.Handler {
			if service != "payments" {
				return h
			}
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "POST" || r.URL.Path != "/api/payments" || r.Header.Get("Idempotency-Key") == "" {
					h.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r) // the charge happens
				dropped.Add(1)
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close() // and its answer never leaves
				}
			})
		}})
	p := seed(t, s, remote)
	placed := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 1))
	o := placed.json(t)
	charge := stepOf(sagaOf(t, o), "charge")
	if charge["status"] != "done" || charge["via"] != "payment_captured event" || dropped.Load() == 0 {
		t.Errorf("charge step %v after %d lost answers; want done via the event", charge, dropped.Load())
	}
	if o["payment_id"] == "" {
		t.Errorf("no payment id: %v", o)
	}
}

// TestMixedModeSaga: with only inventory remote (the walkthrough's first switch), orders go
// through the saga, the charge made in process in the transaction that records it.
func TestMixedModeSaga(t *testing.T) {
	remote := []string{"inventory"}
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 10 * time.Second})
	p := seed(t, s, remote)
	o := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 2)).json(t)
	mustSend(t, 200, "GET", s.URL+"/api/payments/"+o["payment_id"].(string), "")
	mustSend(t, 402, "POST", s.URL+"/api/orders", orderBody(p.bob, "BOOK", 1))
	if on, res := stock(t, s.InventoryURL, "BOOK"); on != 8 || res != 0 {
		t.Errorf("the inventory service has %v on hand, %v reserved; want 8 and 0", on, res)
	}
	mustSend(t, 200, "POST", s.URL+"/api/orders/"+o["id"].(string)+"/cancel", "")
	if on, _ := stock(t, s.InventoryURL, "BOOK"); on != 10 {
		t.Errorf("after the cancellation %v on hand, want 10", on)
	}
	if pay := mustSend(t, 200, "GET", s.URL+"/api/payments/"+o["payment_id"].(string), "").json(t); pay["status"] != "refunded" {
		t.Errorf("payment %v", pay["status"])
	}
}

// TestDetailsWithASideDown: an order's details come within a bounded time when the payments
// service is down: the reservation is there, the payment is null and listed as missing,
// unavailable.
func TestDetailsWithASideDown(t *testing.T) {
	remote := []string{"inventory", "payments"}
	s := startShop(t, shop.Options{Remote: remote, ReplyWithin: 10 * time.Second})
	p := seed(t, s, remote)
	id := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 1)).json(t)["id"].(string)
	s.Stop("payments")
	start := time.Now()
	d := mustSend(t, 200, "GET", s.URL+"/api/orders/"+id+"/details", "").json(t)
	took := time.Since(start)
	missing := d["missing"].([]any)
	if d["reservation"] == nil || d["payment"] != nil || len(missing) != 1 {
		t.Fatalf("details: %v", d)
	}
	if m := missing[0].(map[string]any); m["part"] != "payment" || m["code"] != "unavailable" || m["detail"] == "" {
		t.Errorf("missing: %v", m)
	}
	if took > 2*time.Second+time.Second {
		t.Errorf("the details took %s; want within the details timeout (2s)", took)
	}
}

// TestDetailsInLocalMode: in local mode the details come from the monolith's own modules.
func TestDetailsInLocalMode(t *testing.T) {
	s := startShop(t, shop.Options{})
	p := seed(t, s, nil)
	o := mustSend(t, 201, "POST", s.URL+"/api/orders", orderBody(p.ada, "BOOK", 1)).json(t)
	if _, ok := o["saga"]; ok {
		t.Errorf("an order placed in one transaction shows a saga: %v", o)
	}
	d := mustSend(t, 200, "GET", s.URL+"/api/orders/"+o["id"].(string)+"/details", "").json(t)
	pay, _ := d["payment"].(map[string]any)
	res, _ := d["reservation"].(map[string]any)
	if pay["id"] != o["payment_id"] || res["state"] != "committed" || len(d["missing"].([]any)) != 0 {
		t.Errorf("details: %v", d)
	}
	mustSend(t, 404, "GET", s.URL+"/api/orders/nope/details", "")
}
