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

// Order is an order: placed (and perhaps cancelled), or — in remote mode, while its saga
// runs or after it failed — pending or cancelled with the saga that says why.
type Order struct {
	ID          string      `json:"id"`
	CustomerID  string      `json:"customer_id"`
	Status      string      `json:"status"`
	TotalCents  int64       `json:"total_cents"`
	PaymentID   string      `json:"payment_id"`
	Lines       []OrderLine `json:"lines"`
	CreatedAt   Timestamp   `json:"created_at"`
	CancelledAt *Timestamp  `json:"cancelled_at,omitempty"`
	// Saga is the progress of the saga that placed (or is placing, or cancelled) the order;
	// absent for an order placed in one local transaction.
	Saga *OrderSaga `json:"saga,omitempty"`
}

// OrderSaga is an order saga's progress.
type OrderSaga struct {
	// Kind is place (placing the order) or cancel (cancelling it after it was placed).
	Kind string `json:"kind"`
	// State is running, compensating, stuck, placed or cancelled.
	State string `json:"state"`
	// Step is the step running now (empty at the end).
	Step  string          `json:"step,omitempty"`
	Steps []OrderSagaStep `json:"steps"`
	// Reason says why the saga compensates or compensated.
	Reason    *SagaReason `json:"reason,omitempty"`
	Deadline  Timestamp   `json:"deadline"`
	UpdatedAt Timestamp   `json:"updated_at"`
}

// OrderSagaStep is one step of an order saga.
type OrderSagaStep struct {
	// Name is reserve, charge, confirm (forward) or refund, release, return (compensations).
	Name string `json:"name"`
	// Status is pending, running, done, failed or skipped.
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// Error is the last failed attempt's error.
	Error string `json:"error,omitempty"`
	// Via says how a step completed other than by its own call's answer (an event).
	Via string `json:"via,omitempty"`
}

// SagaReason is why an order saga compensates: the problem placing the order met.
type SagaReason struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// OrderDetails is an order with its payment and its reservation, each fetched from the side
// that owns it. A part that could not be had is null and listed in Missing.
type OrderDetails struct {
	Order       Order         `json:"order"`
	Payment     *Payment      `json:"payment"`
	Reservation *Reservation  `json:"reservation"`
	Missing     []MissingPart `json:"missing"`
}

// MissingPart is a part of an OrderDetails that could not be had, and why.
type MissingPart struct {
	// Part is payment or reservation.
	Part string `json:"part"`
	// Code is the owner's problem code (payment_not_found, …), or unavailable (no answer
	// in time, the owner down) or error.
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// OrderList is a page of orders.
type OrderList struct {
	Orders     []Order `json:"orders"`
	NextCursor string  `json:"next_cursor,omitempty"`
}
