// Package domain holds the inventory service's types and rules.
package domain

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// Item is a stock-keeping unit and its stock. Its HTTP form is contract.Item.
type Item struct {
	SKU        string
	Name       string
	PriceCents int64
	OnHand     int
	Reserved   int
	Available  int
	// Version increases with every stock change.
	Version   int64
	UpdatedAt time.Time
}

// Wire returns the item as the HTTP contract shows it.
func (it Item) Wire() contract.Item {
	return contract.Item{SKU: it.SKU, Name: it.Name, PriceCents: it.PriceCents, OnHand: it.OnHand,
		Reserved: it.Reserved, Available: it.Available, Version: it.Version, UpdatedAt: contract.Timestamp(it.UpdatedAt)}
}

// NewItem creates an item.
type NewItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents *int64 `json:"price_cents"`
	OnHand     *int   `json:"on_hand"`
}

// Restock adds stock.
type Restock struct {
	Quantity *int `json:"quantity"`
}

// Line is a quantity of one SKU.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// PricedLine is a reserved line with the unit price at reservation time.
type PricedLine struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// Reservation states: held, then committed (sold) and perhaps returned (the sale undone),
// or released (never sold).
const (
	Held      = "held"
	Committed = "committed"
	Released  = "released"
	Returned  = "returned"
)

// Reservation is the stock held for one order. Its HTTP form is contract.Reservation.
type Reservation struct {
	OrderID   string
	State     string
	Lines     []PricedLine
	UpdatedAt time.Time
}

// Wire returns the reservation as the HTTP contract shows it: its lines carry their prices.
func (r Reservation) Wire() contract.Reservation {
	out := contract.Reservation{OrderID: r.OrderID, State: r.State, Lines: make([]contract.OrderLine, len(r.Lines)),
		UpdatedAt: contract.Timestamp(r.UpdatedAt)}
	for i, l := range r.Lines {
		out.Lines[i] = contract.OrderLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out
}

// NewReservation asks to hold stock for an order.
type NewReservation struct {
	OrderID string `json:"order_id"`
	Lines   []Line `json:"lines"`
}

// Sentinel errors.
var (
	ErrItemNotFound        = fault.New(fault.NotFound, "item_not_found", "item not found")
	ErrSKUTaken            = fault.New(fault.Conflict, "sku_taken", "an item with this SKU exists")
	ErrInsufficientStock   = fault.New(fault.Conflict, "insufficient_stock", "insufficient stock")
	ErrReservationNotFound = fault.New(fault.NotFound, "reservation_not_found", "reservation not found")
	ErrReservationExists   = fault.New(fault.Conflict, "reservation_exists", "a different reservation exists for this order")
	ErrReservationState    = fault.New(fault.Conflict, "reservation_state", "the reservation is not in a state that allows this")
	// ErrReservationCommitted refuses to release stock that was sold: only a return (the
	// sale undone) may put it back on hand.
	ErrReservationCommitted = fault.New(fault.Conflict, "reservation_committed",
		"the reservation was committed (its stock was sold): return it instead of releasing it")
	// ErrStockLimit is a change that would put more than contract.MaxStock on hand.
	ErrStockLimit = fault.New(fault.Unprocessable, "limit_exceeded",
		fmt.Sprintf("stock on hand would exceed %d", contract.MaxStock))
)

var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// ValidSKU reports whether s is a well-formed SKU.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// Validate checks a new item.
func (n NewItem) Validate() error {
	var f fault.Fields
	f.Check(ValidSKU(n.SKU), "sku", "must match %s", skuPattern)
	f.Check(strings.TrimSpace(n.Name) != "" && len(n.Name) <= 200, "name", "must be 1 to 200 characters")
	f.Check(n.PriceCents != nil, "price_cents", "is required")
	f.Check(n.PriceCents == nil || (*n.PriceCents >= 0 && *n.PriceCents <= contract.MaxCents), "price_cents",
		"must be from 0 to %d", contract.MaxCents)
	f.Check(n.OnHand != nil, "on_hand", "is required")
	f.Check(n.OnHand == nil || (*n.OnHand >= 0 && *n.OnHand <= contract.MaxStock), "on_hand",
		"must be from 0 to %d", contract.MaxStock)
	return f.Err()
}

// Validate checks a restock.
func (r Restock) Validate() error {
	var f fault.Fields
	f.Check(r.Quantity != nil, "quantity", "is required")
	f.Check(r.Quantity == nil || (*r.Quantity > 0 && *r.Quantity <= contract.MaxStock), "quantity",
		"must be from 1 to %d", contract.MaxStock)
	return f.Err()
}

// ValidateLines checks order lines: 1 to contract.MaxOrderLines, quantities from 1 to
// contract.MaxLineQuantity, distinct SKUs. prefix names the field ("lines").
func ValidateLines(prefix string, lines []Line) fault.Fields {
	var f fault.Fields
	f.Check(len(lines) > 0, prefix, "at least one line is required")
	f.Check(len(lines) <= contract.MaxOrderLines, prefix, "at most %d lines", contract.MaxOrderLines)
	seen := map[string]bool{}
	for i, l := range lines {
		p := fmt.Sprintf("%s[%d]", prefix, i)
		f.Check(ValidSKU(l.SKU), p+".sku", "must match %s", skuPattern)
		f.Check(l.Quantity > 0 && l.Quantity <= contract.MaxLineQuantity, p+".quantity",
			"must be from 1 to %d", contract.MaxLineQuantity)
		f.Check(!seen[l.SKU], p+".sku", "appears twice")
		seen[l.SKU] = true
	}
	return f
}

// Validate checks a reservation request.
func (n NewReservation) Validate() error {
	f := ValidateLines("lines", n.Lines)
	f.Check(n.OrderID != "" && len(n.OrderID) <= 64, "order_id", "must be 1 to 64 characters")
	return f.Err()
}
