package contract

import (
	"fmt"
	"time"
)

// The shop's HTTP bodies, as openapi.yaml describes them. The monolith's modules and the
// extracted services encode their responses with these types, so both send the same bytes
// for the same state: field names, omitted optionals and timestamp precision are decided
// here once.

// TimestampLayout is the one format of every timestamp in the contract: RFC 3339 in UTC,
// with exactly millisecond precision.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Timestamp is a point in time as the contract writes it (TimestampLayout).
type Timestamp time.Time

// MarshalJSON writes t in UTC with millisecond precision, whatever zone or precision the
// time was stored with.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if y := tt.UTC().Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("timestamp %v: year outside 0000-9999", tt)
	}
	b := make([]byte, 0, len(TimestampLayout)+2)
	b = append(b, '"')
	b = tt.UTC().AppendFormat(b, TimestampLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads any RFC 3339 time, so clients built on these types accept what older
// servers sent.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := tt.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Timestamp(tt)
	return nil
}

// Time returns t as a time.Time.
func (t Timestamp) Time() time.Time { return time.Time(t) }

// OptionalTimestamp returns nil for nil, else t as a Timestamp: optional timestamps are
// omitted, never null.
func OptionalTimestamp(t *time.Time) *Timestamp {
	if t == nil {
		return nil
	}
	ts := Timestamp(*t)
	return &ts
}

// Customer is a registered customer.
type Customer struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	Email            string    `json:"email"`
	CreditLimitCents int64     `json:"credit_limit_cents"`
	CreatedAt        Timestamp `json:"created_at"`
}

// CustomerList is a page of customers.
type CustomerList struct {
	Customers []Customer `json:"customers"`
	// NextCursor fetches the next page; empty (omitted) on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Item is a stock-keeping unit and its stock.
type Item struct {
	SKU        string    `json:"sku"`
	Name       string    `json:"name"`
	PriceCents int64     `json:"price_cents"`
	OnHand     int       `json:"on_hand"`
	Reserved   int       `json:"reserved"`
	Available  int       `json:"available"`
	Version    int64     `json:"version"`
	UpdatedAt  Timestamp `json:"updated_at"`
}

// ItemList is a page of items.
type ItemList struct {
	Items      []Item `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Reservation is the stock held (then sold, released or returned) for one order. Its lines
// carry the unit price at reservation time (OrderLine), which the order is charged.
type Reservation struct {
	OrderID   string      `json:"order_id"`
	State     string      `json:"state"`
	Lines     []OrderLine `json:"lines"`
	UpdatedAt Timestamp   `json:"updated_at"`
}

// Payment is a captured (and perhaps refunded) charge.
type Payment struct {
	ID          string     `json:"id"`
	CustomerID  string     `json:"customer_id"`
	AmountCents int64      `json:"amount_cents"`
	Reference   string     `json:"reference"`
	Status      string     `json:"status"`
	CreatedAt   Timestamp  `json:"created_at"`
	RefundedAt  *Timestamp `json:"refunded_at,omitempty"`
}

// Order is a placed (and perhaps cancelled) order.
type Order struct {
	ID          string      `json:"id"`
	CustomerID  string      `json:"customer_id"`
	Status      string      `json:"status"`
	TotalCents  int64       `json:"total_cents"`
	PaymentID   string      `json:"payment_id"`
	Lines       []OrderLine `json:"lines"`
	CreatedAt   Timestamp   `json:"created_at"`
	CancelledAt *Timestamp  `json:"cancelled_at,omitempty"`
}

// OrderList is a page of orders.
type OrderList struct {
	Orders     []Order `json:"orders"`
	NextCursor string  `json:"next_cursor,omitempty"`
}
