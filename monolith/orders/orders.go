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
)

// Order states.
const (
	Placed    = domain.Placed
	Cancelled = domain.Cancelled
)

// ErrNotFound is an unknown order.
var ErrNotFound = domain.ErrNotFound

// Customers checks that a customer exists (its error for an unknown one maps to 404).
type Customers interface {
	Exists(ctx context.Context, customerID string) error
}

// Stock holds, sells and gives back stock for an order.
type Stock interface {
	// Reserve holds the lines' stock and returns them priced.
	Reserve(ctx context.Context, orderID string, lines []RequestLine) ([]Line, error)
	Commit(ctx context.Context, orderID string) error
	Release(ctx context.Context, orderID string) error
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
}

// New returns the module on its own handle of db, with its ports.
func New(gdb *gorm.DB, customers Customers, stock Stock, payments Payments) *Service {
	return &Service{db: store.Handle(gdb, Module), customers: customers, stock: stock, payments: payments}
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g; idempotent guards the unsafe POST.
func (s *Service) RegisterRoutes(g *echo.Group, idempotent echo.MiddlewareFunc) {
	httpapi.Register(g, s, idempotent)
}

// Place places an order in one transaction across the modules.
func (s *Service) Place(ctx context.Context, p PlaceOrder) (Order, error) {
	if err := p.Validate(); err != nil {
		return Order{}, err
	}
	o := Order{ID: uuid.Must(uuid.NewV7()).String(), CustomerID: p.CustomerID, Status: Placed,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	// One unit of work across modules: ctx carries it to the ports, whose modules join it.
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := s.customers.Exists(ctx, p.CustomerID); err != nil {
			return err
		}
		lines, err := s.stock.Reserve(ctx, o.ID, p.Lines)
		if err != nil {
			return err
		}
		o.Lines, o.TotalCents = lines, 0 // 0: the transaction may run again (store.Write)
		for _, l := range lines {
			o.TotalCents += l.UnitPriceCents * int64(l.Quantity)
		}
		if o.PaymentID, err = s.payments.Charge(ctx, p.CustomerID, o.TotalCents, o.ID); err != nil {
			return err
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

// ByCustomer returns a customer's orders, newest first.
func (s *Service) ByCustomer(ctx context.Context, customerID string) ([]Order, error) {
	return db.ListByCustomer(store.Conn(ctx, s.db), customerID)
}

// Cancel cancels a placed order: its stock goes back on hand and its payment is refunded, in
// one transaction. Cancelling a cancelled order is a no-op.
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
		if err := s.stock.Release(ctx, id); err != nil {
			return err
		}
		if err := s.payments.Refund(ctx, o.PaymentID); err != nil {
			return err
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
