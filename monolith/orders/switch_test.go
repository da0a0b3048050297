package orders_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/fault"
)

// TestCancelAnOrderPlacedBeforeTheSwitch: an order placed in one transaction while the
// modules were local is cancelled, once they are remote, by a cancel saga of its own: the
// payment refunded, the stock returned, the order marked cancelled. Cancelling it again
// changes nothing; an order still being placed cannot be cancelled.
func TestCancelAnOrderPlacedBeforeTheSwitch(t *testing.T) {
	gdb, close := openSagaDB(t)
	defer close()
	ctx := context.Background()
	w := newWorld(nil)
	w.items["SKU-1"] = &fakeItem{onHand: 5, price: 300}
	w.initial["SKU-1"] = 5
	w.customers["rich"] = &fakeCustomer{credit: 10_000}
	w.alive.Store(1)
	stock, pay := w.ports(1)
	local := orders.New(gdb, customersPort{w}, stock, pay, orders.Options{})
	o, err := local.Place(ctx, orders.PlaceOrder{CustomerID: "rich", Lines: []orders.RequestLine{{SKU: "SKU-1", Quantity: 2}}})
	if err != nil || o.Status != orders.Placed || o.Saga != nil {
		t.Fatalf("placing in one transaction: %v %+v", err, o)
	}
	local.Close()

	remote := orders.New(gdb, customersPort{w}, stock, pay, orders.Options{BySaga: true, Saga: sagaTestOptions(time.Second), ReplyWithin: 5 * time.Second})
	defer remote.Close()
	c, err := remote.Cancel(ctx, o.ID)
	if err != nil || c.Status != orders.Cancelled || c.Saga == nil || c.Saga.Kind != "cancel" || c.Saga.State != orders.SagaCancelled {
		t.Fatalf("cancelling after the switch: %v %+v", err, c)
	}
	if w.items["SKU-1"].onHand != 5 || w.reservations[o.ID].state != "returned" || !w.payments[o.PaymentID].refunded || w.customers["rich"].credit != 10_000 {
		t.Errorf("after the cancel saga: item %+v, reservation %+v, payment %+v, credit %d", *w.items["SKU-1"], *w.reservations[o.ID], *w.payments[o.PaymentID], w.customers["rich"].credit)
	}
	again, err := remote.Cancel(ctx, o.ID)
	if err != nil || again.Status != orders.Cancelled || w.items["SKU-1"].onHand != 5 {
		t.Errorf("cancelling again: %v %+v, on hand %d", err, again, w.items["SKU-1"].onHand)
	}

	// An order whose saga is still placing it: the inventory side is down.
	w.script = []faultKind{fDown, fDown, fDown, fDown, fDown, fDown, fDown, fDown}
	slow := orders.New(gdb, customersPort{w}, stock, pay, orders.Options{BySaga: true,
		Saga: orders.SagaOptions{Timeout: time.Minute, Backoff: time.Second, MaxBackoff: time.Second}, ReplyWithin: 50 * time.Millisecond})
	defer slow.Close()
	p, err := slow.Place(ctx, orders.PlaceOrder{CustomerID: "rich", Lines: []orders.RequestLine{{SKU: "SKU-1", Quantity: 1}}})
	if err != nil || p.Status != orders.Pending || !p.InProgress() {
		t.Fatalf("placing with inventory down: %v %+v, want pending", err, p)
	}
	if _, err := slow.Cancel(ctx, p.ID); !errors.Is(err, orders.ErrPending) {
		t.Errorf("cancelling a pending order: %v, want ErrPending", err)
	} else if fe, _ := fault.As(err); fe.Code != "order_pending" {
		t.Errorf("code %q", fe.Code)
	}
}
