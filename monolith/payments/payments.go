// Package payments is the monolith's payments module: charges and refunds through a simulated
// gateway with deterministic rules (see docs/api.md). Other modules use only this package.
package payments

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/payments/internal/db"
	"github.com/ficus-project/ficus/monolith/payments/internal/domain"
	"github.com/ficus-project/ficus/monolith/payments/internal/httpapi"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the module's name; its tables start with it.
const Module = "payments"

// Source is the module's event source.
const Source = "/monolith/payments"

// Types of the module's public API.
type (
	Payment = domain.Payment
	Charge  = domain.Charge
	Payer   = domain.Payer
)

// Payment states.
const (
	Captured = domain.Captured
	Refunded = domain.Refunded
)

// Sentinel errors.
var (
	ErrNotFound           = domain.ErrNotFound
	ErrCustomerNotFound   = domain.ErrCustomerNotFound
	ErrDeclined           = domain.ErrDeclined
	ErrGatewayUnavailable = domain.ErrGatewayUnavailable
)

// Payers is how the module learns who it charges. It returns ErrCustomerNotFound for an
// unknown customer.
type Payers interface {
	Payer(ctx context.Context, customerID string) (Payer, error)
}

// Service is the payments module.
type Service struct {
	db     *gorm.DB
	payers Payers
	// newID makes payment ids; tests replace it to see a failure handled.
	newID func() (uuid.UUID, error)
}

// New returns the module on its own handle of db.
func New(gdb *gorm.DB, payers Payers) *Service {
	return &Service{db: store.Handle(gdb, Module), payers: payers, newID: uuid.NewV7}
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g; idempotent guards the unsafe POST.
func (s *Service) RegisterRoutes(g *echo.Group, idempotent echo.MiddlewareFunc) {
	httpapi.Register(g, s, idempotent)
}

// Charge captures a payment, or refuses it by the gateway's rules.
func (s *Service) Charge(ctx context.Context, ch Charge) (Payment, error) {
	if err := ch.Validate(); err != nil {
		return Payment{}, err
	}
	id, err := s.newID()
	if err != nil {
		return Payment{}, fmt.Errorf("charging customer %s: making a payment id: %w", ch.CustomerID, err)
	}
	var out Payment
	err = store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		payer, err := s.payers.Payer(ctx, ch.CustomerID)
		if err != nil {
			return err
		}
		if err := domain.Screen(payer); err != nil {
			return err
		}
		taken, err := db.TakeCredit(tx, ch.CustomerID, *ch.AmountCents, payer.CreditLimitCents)
		if err != nil {
			return err
		}
		if !taken {
			return domain.ErrCreditLimit
		}
		p := Payment{ID: id.String(), CustomerID: ch.CustomerID, AmountCents: *ch.AmountCents,
			Reference: strings.TrimSpace(ch.Reference), Status: Captured, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		if err := db.Insert(tx, p); err != nil {
			return err
		}
		out = p
		return outbox.Record(ctx, tx, Source, contract.TypePaymentCaptured, p.ID, contract.PaymentCaptured{
			PaymentID: p.ID, CustomerID: p.CustomerID, Reference: p.Reference, AmountCents: p.AmountCents})
	})
	if err != nil {
		return Payment{}, fmt.Errorf("charging customer %s: %w", ch.CustomerID, err)
	}
	return out, nil
}

// Payment returns one payment.
func (s *Service) Payment(ctx context.Context, id string) (Payment, error) {
	return db.Get(store.Conn(ctx, s.db), id)
}

// Refund refunds a captured payment in full. Refunding a refunded payment is a no-op.
func (s *Service) Refund(ctx context.Context, id string) (Payment, error) {
	var out Payment
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		now := time.Now().UTC().Truncate(time.Millisecond)
		changed, err := db.MarkRefunded(tx, id, now)
		if err != nil {
			return err
		}
		p, err := db.Get(tx, id)
		if err != nil {
			return err
		}
		out = p
		if !changed {
			return nil
		}
		if err := db.GiveCredit(tx, p.CustomerID, p.AmountCents); err != nil {
			return err
		}
		return outbox.Record(ctx, tx, Source, contract.TypePaymentRefunded, p.ID, contract.PaymentRefunded{
			PaymentID: p.ID, CustomerID: p.CustomerID, Reference: p.Reference, AmountCents: p.AmountCents})
	})
	if err != nil {
		return Payment{}, fmt.Errorf("refunding payment %s: %w", id, err)
	}
	return out, nil
}
