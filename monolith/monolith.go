// Package monolith assembles the modular monolith: it opens the one database, applies each
// module's migrations, connects the modules through their ports (in process, or to an
// extracted service when config.yaml says remote), and serves their HTTP routes.
package monolith

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/monolith/payments"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Monolith is the assembled shop.
type Monolith struct {
	DB        *gorm.DB
	Customers *customers.Service
	Inventory *inventory.Service
	Payments  *payments.Service
	Orders    *orders.Service
	echo      *echo.Echo
}

// New opens the monolith's database, migrates it and wires the modules.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Monolith, error) {
	for _, m := range config.Capabilities {
		if cfg.Monolith.Modules[m] == config.ModuleRemote {
			return nil, fmt.Errorf("monolith: module %s is remote, but this build has no remote adapter for it yet", m)
		}
	}
	db, err := store.Open(ctx, cfg.Monolith.Database, store.Options{
		Resolve: cfg.Resolve,
		Modules: []string{customers.Module, inventory.Module, payments.Module, orders.Module},
	})
	if err != nil {
		return nil, fmt.Errorf("monolith: %w", err)
	}
	m, err := assemble(ctx, db, logger)
	if err != nil {
		_ = store.Close(db)
		return nil, fmt.Errorf("monolith: %w", err)
	}
	return m, nil
}

func assemble(ctx context.Context, db *gorm.DB, logger *slog.Logger) (*Monolith, error) {
	migrations := []func(context.Context, *gorm.DB) error{
		outbox.Migrate, idempotency.Migrate,
		customers.Migrate, inventory.Migrate, payments.Migrate, orders.Migrate,
	}
	for _, migrate := range migrations {
		if err := migrate(ctx, db); err != nil {
			return nil, err
		}
	}
	m := &Monolith{DB: db}
	m.Customers = customers.New(db)
	m.Inventory = inventory.New(db)
	m.Payments = payments.New(db, localPayers{m.Customers})
	m.Orders = orders.New(db, localCustomers{m.Customers}, localStock{m.Inventory}, localPayments{m.Payments})

	m.echo = web.New(logger, func() error {
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		return sqlDB.Ping()
	})
	idem := idempotency.Middleware(db, idempotency.Options{})
	g := m.echo.Group("")
	m.Customers.RegisterRoutes(g)
	m.Inventory.RegisterRoutes(g)
	m.Payments.RegisterRoutes(g, idem)
	m.Orders.RegisterRoutes(g, idem)
	return m, nil
}

// Handler serves the shop's HTTP contract.
func (m *Monolith) Handler() http.Handler { return m.echo }

// ServeMetrics adds h (a Prometheus handler) at /metrics.
func (m *Monolith) ServeMetrics(h http.Handler) { m.echo.GET("/metrics", echo.WrapHandler(h)) }

// Close closes the database.
func (m *Monolith) Close() error { return store.Close(m.DB) }

// localCustomers adapts the customers module to the orders module's port.
type localCustomers struct{ s *customers.Service }

func (a localCustomers) Exists(ctx context.Context, id string) error {
	_, err := a.s.Get(ctx, id)
	return err
}

// localPayers adapts the customers module to the payments module's port.
type localPayers struct{ s *customers.Service }

func (a localPayers) Payer(ctx context.Context, id string) (payments.Payer, error) {
	c, err := a.s.Get(ctx, id)
	if errors.Is(err, customers.ErrNotFound) {
		return payments.Payer{}, payments.ErrCustomerNotFound
	}
	if err != nil {
		return payments.Payer{}, err
	}
	return payments.Payer{ID: c.ID, Email: c.Email, CreditLimitCents: c.CreditLimitCents}, nil
}

// localStock adapts the inventory module to the orders module's port.
type localStock struct{ s *inventory.Service }

func (a localStock) Reserve(ctx context.Context, orderID string, lines []orders.RequestLine) ([]orders.Line, error) {
	req := inventory.NewReservation{OrderID: orderID, Lines: make([]inventory.Line, len(lines))}
	for i, l := range lines {
		req.Lines[i] = inventory.Line{SKU: l.SKU, Quantity: l.Quantity}
	}
	r, err := a.s.Reserve(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]orders.Line, len(r.Lines))
	for i, l := range r.Lines {
		out[i] = orders.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out, nil
}

func (a localStock) Commit(ctx context.Context, orderID string) error {
	_, err := a.s.Commit(ctx, orderID)
	return err
}

func (a localStock) Return(ctx context.Context, orderID string) error {
	_, err := a.s.Return(ctx, orderID)
	return err
}

// localPayments adapts the payments module to the orders module's port.
type localPayments struct{ s *payments.Service }

func (a localPayments) Charge(ctx context.Context, customerID string, amount int64, orderID string) (string, error) {
	amt := amount
	p, err := a.s.Charge(ctx, payments.Charge{CustomerID: customerID, AmountCents: &amt, Reference: orderID})
	if err != nil {
		return "", err
	}
	return p.ID, nil
}

func (a localPayments) Refund(ctx context.Context, paymentID string) error {
	_, err := a.s.Refund(ctx, paymentID)
	return err
}
