// Package orders is the monolith's orders module. Placing an order validates the customer,
// reserves stock, charges the payment and records the order in one local ACID transaction:
// any failure leaves no trace. The module reaches the other capabilities only through the
// ports it declares here (Customers, Stock, Payments); each has an in-process adapter and, once
// a capability is extracted, a remote one.
package orders

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/db"
	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/monolith/orders/internal/httpapi"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the module's name; its tables start with it.
const Module = "orders"

// Source is the module's event source.
const Source = "/monolith/orders"

// Types of the module's public API.
type (
	Order       = domain.Order
	Line        = domain.Line
	PlaceOrder  = domain.PlaceOrder
	RequestLine = domain.RequestLine
	// Key is an order's place in its customer's list (ByCustomer).
	Key = domain.Key
)

// Order states.
const (
	Placed    = domain.Placed
	Cancelled = domain.Cancelled
)

// Sentinel errors.
var (
	// ErrNotFound is an unknown order.
	ErrNotFound = domain.ErrNotFound
	// ErrTotalLimit is an order whose total would exceed contract.MaxCents.
	ErrTotalLimit = domain.ErrTotalLimit
)

// Customers checks that a customer exists (its error for an unknown one maps to 404).
type Customers interface {
	Exists(ctx context.Context, customerID string) error
}

// Stock holds, sells and gives back stock for an order.
type Stock interface {
	// Reserve holds the lines' stock and returns them priced.
	Reserve(ctx context.Context, orderID string, lines []RequestLine) ([]Line, error)
	// Commit sells the held stock.
	Commit(ctx context.Context, orderID string) error
	// Return puts sold stock back on hand: the order was cancelled after the sale.
	Return(ctx context.Context, orderID string) error
}

// Payments charges and refunds.
type Payments interface {
	// Charge captures amount from the customer, referencing the order, and returns the
	// payment id.
	Charge(ctx context.Context, customerID string, amountCents int64, orderID string) (string, error)
	Refund(ctx context.Context, paymentID string) error
}

// Service is the orders module.
type Service struct {
	db        *gorm.DB
	customers Customers
	stock     Stock
	payments  Payments
	// newID makes order ids; tests replace it to see a failure handled.
	newID func() (uuid.UUID, error)
}

// New returns the module on its own handle of db, with its ports.
func New(gdb *gorm.DB, customers Customers, stock Stock, payments Payments) *Service {
	return &Service{db: store.Handle(gdb, Module), customers: customers, stock: stock, payments: payments, newID: uuid.NewV7}
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g; idempotent guards the unsafe POST.
func (s *Service) RegisterRoutes(g *echo.Group, idempotent echo.MiddlewareFunc) {
	httpapi.Register(g, s, idempotent)
}

// Place places an order in one transaction across the modules. Its total is checked
// arithmetic: past contract.MaxCents it is ErrTotalLimit, and nothing is kept. An order
// whose total is 0 charges nothing and has no payment.
func (s *Service) Place(ctx context.Context, p PlaceOrder) (Order, error) {
	if err := p.Validate(); err != nil {
		return Order{}, err
	}
	id, err := s.newID()
	if err != nil {
		return Order{}, fmt.Errorf("placing order: making an id: %w", err)
	}
	o := Order{ID: id.String(), CustomerID: p.CustomerID, Status: Placed,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	// One unit of work across modules: ctx carries it to the ports, whose modules join it.
	// On PostgreSQL it may run again after a serialization failure, so it sets every field
	// of o it uses rather than adding to one.
	err = store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := s.customers.Exists(ctx, p.CustomerID); err != nil {
			return err
		}
		lines, err := s.stock.Reserve(ctx, o.ID, p.Lines)
		if err != nil {
			return err
		}
		o.Lines = lines
		if o.TotalCents, err = domain.Total(lines); err != nil {
			return err
		}
		if o.TotalCents > 0 {
			if o.PaymentID, err = s.payments.Charge(ctx, p.CustomerID, o.TotalCents, o.ID); err != nil {
				return err
			}
		}
		if err := s.stock.Commit(ctx, o.ID); err != nil {
			return err
		}
		if err := db.Insert(tx, o); err != nil {
			return err
		}
		data := contract.OrderPlaced{OrderID: o.ID, CustomerID: o.CustomerID, TotalCents: o.TotalCents, PaymentID: o.PaymentID}
		for _, l := range o.Lines {
			data.Lines = append(data.Lines, contract.OrderLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents})
		}
		return outbox.Record(ctx, tx, Source, contract.TypeOrderPlaced, o.ID, data)
	})
	if err != nil {
		return Order{}, fmt.Errorf("placing order: %w", err)
	}
	return o, nil
}

// Order returns one order.
func (s *Service) Order(ctx context.Context, id string) (Order, error) {
	return db.Get(store.Conn(ctx, s.db), id)
}

// ByCustomer returns up to limit of a customer's orders, newest first (by created_at, then
// id), after the order at key after (nil for the first page).
func (s *Service) ByCustomer(ctx context.Context, customerID string, after *Key, limit int) ([]Order, error) {
	return db.ListByCustomer(store.Conn(ctx, s.db), customerID, after, limit)
}

// Cancel cancels a placed order: its sold stock is returned to on-hand and its payment
// refunded, in one transaction. Cancelling a cancelled order is a no-op.
func (s *Service) Cancel(ctx context.Context, id string) (Order, error) {
	var out Order
	// One unit of work across modules: ctx carries it to the ports, whose modules join it.
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		o, err := db.Get(tx, id)
		if err != nil {
			return err
		}
		if o.Status == Cancelled {
			out = o
			return nil
		}
		if err := s.stock.Return(ctx, id); err != nil {
			return err
		}
		if o.PaymentID != "" {
			if err := s.payments.Refund(ctx, o.PaymentID); err != nil {
				return err
			}
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		if _, err := db.MarkCancelled(tx, id, now); err != nil {
			return err
		}
		o.Status, o.CancelledAt = Cancelled, &now
		out = o
		return outbox.Record(ctx, tx, Source, contract.TypeOrderCancelled, o.ID, contract.OrderCancelled{
			OrderID: o.ID, CustomerID: o.CustomerID, Reason: "cancelled by request"})
	})
	if err != nil {
		return Order{}, fmt.Errorf("cancelling order %s: %w", id, err)
	}
	return out, nil
}
