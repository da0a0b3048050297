package remote

import (
	"context"
	"net/url"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/contract"
)

// Stock is the orders module's Stock port served by the inventory service's reservations
// (POST /api/inventory/reservations, …/{order_id}/commit|release|return).
type Stock struct{ c *Client }

// NewStock returns the Stock port on c, a client of the inventory service.
func NewStock(c *Client) Stock { return Stock{c: c} }

var _ orders.Stock = Stock{}

// reservationRequest is the body of POST /api/inventory/reservations.
type reservationRequest struct {
	OrderID string               `json:"order_id"`
	Lines   []orders.RequestLine `json:"lines"`
}

// Reserve holds the lines' stock for the order. The service keys reservations by order: a
// repeat with the same lines answers the existing reservation, so the step is safe to retry.
func (s Stock) Reserve(ctx context.Context, orderID string, lines []orders.RequestLine) ([]orders.Line, error) {
	var r contract.Reservation
	if err := s.c.call(ctx, "POST", "/api/inventory/reservations", Key(orderID, "reserve"),
		reservationRequest{OrderID: orderID, Lines: lines}, &r); err != nil {
		return nil, err
	}
	out := make([]orders.Line, len(r.Lines))
	for i, l := range r.Lines {
		out[i] = orders.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out, nil
}

// Commit sells the held stock; committing a committed reservation changes nothing.
func (s Stock) Commit(ctx context.Context, orderID string) error {
	return s.step(ctx, orderID, "commit")
}

// Release ends the hold; releasing a released reservation changes nothing.
func (s Stock) Release(ctx context.Context, orderID string) error {
	return s.step(ctx, orderID, "release")
}

// Return puts sold stock back on hand; returning a returned reservation changes nothing.
func (s Stock) Return(ctx context.Context, orderID string) error {
	return s.step(ctx, orderID, "return")
}

func (s Stock) step(ctx context.Context, orderID, verb string) error {
	return s.c.call(ctx, "POST", "/api/inventory/reservations/"+url.PathEscape(orderID)+"/"+verb, Key(orderID, verb), nil, nil)
}

// Reservation returns the order's reservation as the contract shows it.
func (s Stock) Reservation(ctx context.Context, orderID string) (contract.Reservation, error) {
	var r contract.Reservation
	err := s.c.call(ctx, "GET", "/api/inventory/reservations/"+url.PathEscape(orderID), "", nil, &r)
	return r, err
}

// Payments is the orders module's Payments port served by the payments service.
type Payments struct{ c *Client }

// NewPayments returns the Payments port on c, a client of the payments service.
func NewPayments(c *Client) Payments { return Payments{c: c} }

var _ orders.Payments = Payments{}

// chargeRequest is the body of POST /api/payments.
type chargeRequest struct {
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
	Reference   string `json:"reference"`
}

// Charge captures amount from the customer for the order. It always sends the same
// Idempotency-Key and body for an order, so the payments service charges an order at most
// once however often it is asked, and answers a repeat with what it did the first time.
func (p Payments) Charge(ctx context.Context, customerID string, amountCents int64, orderID string) (string, error) {
	var out contract.Payment
	err := p.c.call(ctx, "POST", "/api/payments", Key(orderID, "charge"),
		chargeRequest{CustomerID: customerID, AmountCents: amountCents, Reference: orderID}, &out)
	return out.ID, err
}

// Refund refunds the order's payment in full; refunding a refunded payment changes nothing.
func (p Payments) Refund(ctx context.Context, orderID, paymentID string) error {
	return p.c.call(ctx, "POST", "/api/payments/"+url.PathEscape(paymentID)+"/refund", Key(orderID, "refund"), nil, nil)
}

// Payment returns the payment as the contract shows it.
func (p Payments) Payment(ctx context.Context, paymentID string) (contract.Payment, error) {
	var out contract.Payment
	err := p.c.call(ctx, "GET", "/api/payments/"+url.PathEscape(paymentID), "", nil, &out)
	return out, err
}
