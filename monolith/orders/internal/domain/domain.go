// Package domain holds the orders module's types and rules.
package domain

import (
	"fmt"
	"regexp"
	"time"

	"github.com/ficus-project/ficus/platform/fault"
)

// Order states.
const (
	Placed    = "placed"
	Cancelled = "cancelled"
)

// Line is one line of an order.
type Line struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order is a placed (and perhaps cancelled) order.
type Order struct {
	ID          string     `json:"id"`
	CustomerID  string     `json:"customer_id"`
	Status      string     `json:"status"`
	TotalCents  int64      `json:"total_cents"`
	PaymentID   string     `json:"payment_id"`
	Lines       []Line     `json:"lines"`
	CreatedAt   time.Time  `json:"created_at"`
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
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
)

var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// Validate checks a place-order request.
func (p PlaceOrder) Validate() error {
	var f fault.Fields
	f.Check(p.CustomerID != "", "customer_id", "is required")
	f.Check(len(p.Lines) > 0, "lines", "at least one line is required")
	f.Check(len(p.Lines) <= 100, "lines", "at most 100 lines")
	seen := map[string]bool{}
	for i, l := range p.Lines {
		prefix := fmt.Sprintf("lines[%d]", i)
		f.Check(skuPattern.MatchString(l.SKU), prefix+".sku", "must match %s", skuPattern)
		f.Check(l.Quantity > 0, prefix+".quantity", "must be positive")
		f.Check(!seen[l.SKU], prefix+".sku", "appears twice")
		seen[l.SKU] = true
	}
	return f.Err()
}
