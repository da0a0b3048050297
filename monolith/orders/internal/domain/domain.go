// Package domain holds the orders module's types and rules.
package domain

import (
	"fmt"
	"math/bits"
	"regexp"
	"time"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// Order states. Pending is an order whose saga is still placing it (remote mode).
const (
	Pending   = "pending"
	Placed    = "placed"
	Cancelled = "cancelled"
)

// Line is one line of an order.
type Line struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// Order is a placed (and perhaps cancelled) order, or one its saga is placing or failed to
// place. Its HTTP form is contract.Order.
type Order struct {
	ID         string
	CustomerID string
	Status     string
	TotalCents int64
	// PaymentID is empty when the total is 0: nothing was charged.
	PaymentID   string
	Lines       []Line
	CreatedAt   time.Time
	CancelledAt *time.Time
	// Saga is the order's saga, if it has one.
	Saga *Saga
}

// InProgress reports whether the order's saga is still at work: placing it, or cancelling it.
func (o Order) InProgress() bool { return o.Saga != nil && !o.Saga.Terminal() }

// Wire returns the order as the HTTP contract shows it.
func (o Order) Wire() contract.Order {
	out := contract.Order{ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, TotalCents: o.TotalCents,
		PaymentID: o.PaymentID, Lines: make([]contract.OrderLine, len(o.Lines)),
		CreatedAt: contract.Timestamp(o.CreatedAt), CancelledAt: contract.OptionalTimestamp(o.CancelledAt)}
	for i, l := range o.Lines {
		out.Lines[i] = contract.OrderLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	if o.Saga != nil {
		out.Saga = o.Saga.Wire()
	}
	return out
}

// Key is an order's place in a customer's list, newest first: its creation time, then its id.
type Key struct {
	CreatedAt time.Time
	ID        string
}

// RequestLine is a line of a place-order request.
type RequestLine struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// PlaceOrder asks to place an order.
type PlaceOrder struct {
	CustomerID string        `json:"customer_id"`
	Lines      []RequestLine `json:"lines"`
}

// Sentinel errors.
var (
	ErrNotFound = fault.New(fault.NotFound, "order_not_found", "order not found")
	// ErrTotalLimit is an order whose total would exceed contract.MaxCents.
	ErrTotalLimit = fault.New(fault.Unprocessable, "limit_exceeded",
		fmt.Sprintf("the order's total would exceed %d cents", contract.MaxCents))
)

var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// Validate checks a place-order request.
func (p PlaceOrder) Validate() error {
	var f fault.Fields
	f.Check(p.CustomerID != "", "customer_id", "is required")
	f.Check(len(p.Lines) > 0, "lines", "at least one line is required")
	f.Check(len(p.Lines) <= contract.MaxOrderLines, "lines", "at most %d lines", contract.MaxOrderLines)
	seen := map[string]bool{}
	for i, l := range p.Lines {
		prefix := fmt.Sprintf("lines[%d]", i)
		f.Check(skuPattern.MatchString(l.SKU), prefix+".sku", "must match %s", skuPattern)
		f.Check(l.Quantity > 0 && l.Quantity <= contract.MaxLineQuantity, prefix+".quantity",
			"must be from 1 to %d", contract.MaxLineQuantity)
		f.Check(!seen[l.SKU], prefix+".sku", "appears twice")
		seen[l.SKU] = true
	}
	return f.Err()
}

// Total sums the lines' quantity × unit price, checked: a total past contract.MaxCents (or
// one that would overflow on the way) is ErrTotalLimit on the field lines, the part of the
// request that made it; a negative quantity or price is a bug upstream, refused as well.
func Total(lines []Line) (int64, error) {
	var total uint64
	for _, l := range lines {
		if l.Quantity < 0 || l.UnitPriceCents < 0 {
			return 0, fmt.Errorf("totalling order: line %s has quantity %d at %d cents", l.SKU, l.Quantity, l.UnitPriceCents)
		}
		hi, lo := bits.Mul64(uint64(l.Quantity), uint64(l.UnitPriceCents))
		sum, carry := bits.Add64(total, lo, 0)
		if hi != 0 || carry != 0 || sum > uint64(contract.MaxCents) {
			e := *ErrTotalLimit
			e.Fields = []fault.Field{{Name: "lines", Msg: fmt.Sprintf("the total (quantity × unit price, summed) would exceed %d cents", contract.MaxCents)}}
			return 0, &e
		}
		total = sum
	}
	return int64(total), nil
}
