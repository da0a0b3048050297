// Package domain holds the inventory module's types and rules.
package domain

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/fault"
)

// Item is a stock-keeping unit and its stock.
type Item struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	OnHand     int    `json:"on_hand"`
	Reserved   int    `json:"reserved"`
	Available  int    `json:"available"`
	// Version increases with every stock change.
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
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
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Reservation states.
const (
	Held      = "held"
	Committed = "committed"
	Released  = "released"
)

// Reservation is the stock held for one order.
type Reservation struct {
	OrderID   string       `json:"order_id"`
	State     string       `json:"state"`
	Lines     []PricedLine `json:"lines"`
	UpdatedAt time.Time    `json:"updated_at"`
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
	f.Check(n.PriceCents == nil || *n.PriceCents >= 0, "price_cents", "must not be negative")
	f.Check(n.OnHand != nil, "on_hand", "is required")
	f.Check(n.OnHand == nil || *n.OnHand >= 0, "on_hand", "must not be negative")
	return f.Err()
}

// Validate checks a restock.
func (r Restock) Validate() error {
	var f fault.Fields
	f.Check(r.Quantity != nil, "quantity", "is required")
	f.Check(r.Quantity == nil || *r.Quantity > 0, "quantity", "must be positive")
	return f.Err()
}

// ValidateLines checks order lines: 1 to 100, positive quantities, distinct SKUs. prefix names
// the field ("lines").
func ValidateLines(prefix string, lines []Line) fault.Fields {
	var f fault.Fields
	f.Check(len(lines) > 0, prefix, "at least one line is required")
	f.Check(len(lines) <= 100, prefix, "at most 100 lines")
	seen := map[string]bool{}
	for i, l := range lines {
		p := fmt.Sprintf("%s[%d]", prefix, i)
		f.Check(ValidSKU(l.SKU), p+".sku", "must match %s", skuPattern)
		f.Check(l.Quantity > 0, p+".quantity", "must be positive")
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
