// Package customers is the monolith's customers module: registration and credit limits.
// Other modules use only this package; everything else is under internal/.
package customers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/customers/internal/db"
	"github.com/ficus-project/ficus/monolith/customers/internal/domain"
	"github.com/ficus-project/ficus/monolith/customers/internal/httpapi"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the module's name; its tables start with it.
const Module = "customers"

// Source is the module's event source.
const Source = "/monolith/customers"

// Types of the module's public API.
type (
	Customer    = domain.Customer
	NewCustomer = domain.NewCustomer
)

// Sentinel errors.
var (
	ErrNotFound   = domain.ErrNotFound
	ErrEmailTaken = domain.ErrEmailTaken
)

// Service is the customers module.
type Service struct {
	db *gorm.DB
	// newID makes customer ids; tests replace it to see a failure handled.
	newID func() (uuid.UUID, error)
}

// New returns the module on its own handle of db.
func New(gdb *gorm.DB) *Service {
	return &Service{db: store.Handle(gdb, Module), newID: uuid.NewV7}
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g.
func (s *Service) RegisterRoutes(g *echo.Group) { httpapi.Register(g, s) }

// Create registers a customer.
func (s *Service) Create(ctx context.Context, n NewCustomer) (Customer, error) {
	if err := n.Validate(); err != nil {
		return Customer{}, err
	}
	id, err := s.newID()
	if err != nil {
		return Customer{}, fmt.Errorf("creating customer: making an id: %w", err)
	}
	c := Customer{
		ID:               id.String(),
		Name:             strings.TrimSpace(n.Name),
		Email:            domain.NormalizeEmail(n.Email),
		CreditLimitCents: *n.CreditLimitCents,
		CreatedAt:        time.Now().UTC().Truncate(time.Millisecond),
		Version:          1,
	}
	err = store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := db.Insert(tx, c); err != nil {
			return err
		}
		return outbox.Record(ctx, tx, Source, contract.TypeCustomerRegistered, c.ID, contract.CustomerRegistered{
			CustomerID: c.ID, Name: c.Name, Email: c.Email, CreditLimitCents: c.CreditLimitCents})
	})
	if err != nil {
		return Customer{}, fmt.Errorf("creating customer: %w", err)
	}
	return c, nil
}

// Get returns a customer.
func (s *Service) Get(ctx context.Context, id string) (Customer, error) {
	return db.Get(store.Conn(ctx, s.db), id)
}

// ByEmail returns the customer registered with email, normalised as registration stores it.
func (s *Service) ByEmail(ctx context.Context, email string) (Customer, error) {
	return db.ByEmail(store.Conn(ctx, s.db), domain.NormalizeEmail(email))
}

// List returns up to limit customers, oldest first (ids grow with time), after the one with
// id afterID ("" for the first page).
func (s *Service) List(ctx context.Context, afterID string, limit int) ([]Customer, error) {
	return db.List(store.Conn(ctx, s.db), afterID, limit)
}

// Count returns how many customers there are.
func (s *Service) Count(ctx context.Context) (int64, error) {
	return db.Count(store.Conn(ctx, s.db))
}

// SetCreditLimit changes a customer's credit limit.
func (s *Service) SetCreditLimit(ctx context.Context, id string, cents int64) (Customer, error) {
	if err := (domain.CreditLimit{CreditLimitCents: &cents}).Validate(); err != nil {
		return Customer{}, err
	}
	var out Customer
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := db.SetCreditLimit(tx, id, cents, time.Now().UTC()); err != nil {
			return err
		}
		c, err := db.Get(tx, id)
		if err != nil {
			return err
		}
		out = c
		return outbox.Record(ctx, tx, Source, contract.TypeCustomerCreditLimitChange, c.ID, contract.CustomerCreditLimitChanged{
			CustomerID: c.ID, CreditLimitCents: c.CreditLimitCents, Version: c.Version})
	})
	if err != nil {
		return Customer{}, fmt.Errorf("setting credit limit: %w", err)
	}
	return out, nil
}
