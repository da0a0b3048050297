// Package payments is the extracted payments service: charges and refunds through a simulated
// gateway with deterministic rules (see docs/api.md), in a database of its own, behind the
// same HTTP contract as the monolith's payments module it replaces (platform/contract). Open
// assembles the service; Service is its domain API.
//
// Customers stay in the monolith. The service keeps its own copy of what it needs of them
// (email and credit limit), fed by the monolith's customer events through its inbox
// (FollowCustomers), and never reads another database. extracted/README.md says what happens
// to a charge for a customer the copy has not received yet, and what was copied from the
// module, what was rewritten, and why. The package never imports monolith/.
package payments

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/payments/internal/db"
	"github.com/ficus-project/ficus/extracted/payments/internal/domain"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the name the service's tables start with: the same tables, with the same
// columns, as the monolith's module (plus payments_customers, the customer copy), so
// `ficus migrate payments` copies rows as they are.
const Module = "payments"

// Source is the service's CloudEvents source: its events have the monolith module's types,
// and this source tells them apart.
const Source = "/services/payments"

// Types of the service's Go API.
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
	// ErrCustomerNotYetKnown is a charge for a customer the copy has not received while
	// the copy is behind the monolith: 503, retry.
	ErrCustomerNotYetKnown = domain.ErrCustomerNotYetKnown
)

// Service is the payments service's domain API.
type Service struct {
	db *gorm.DB
	// customers is the copy of the customers, and how far behind it is.
	customers *customerCopy
	// newID makes payment ids; tests replace it to see a failure handled.
	newID func() (uuid.UUID, error)
	now   func() time.Time
}

// newService returns the service on its own handle of gdb.
func newService(gdb *gorm.DB, customers *customerCopy) *Service {
	return &Service{db: store.Handle(gdb, Module), customers: customers, newID: uuid.NewV7,
		now: func() time.Time { return time.Now().UTC() }}
}

// Migrate applies the service's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// Charge captures a payment, or refuses it by the gateway's rules. The payer comes from the
// service's copy of the customers: one it has not received is ErrCustomerNotFound here (see
// AwaitCustomer for waiting until it has).
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
		payer, err := db.Payer(tx, ch.CustomerID)
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
			Reference: strings.TrimSpace(ch.Reference), Status: Captured, CreatedAt: s.now().Truncate(time.Millisecond)}
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
		now := s.now().Truncate(time.Millisecond)
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

// AwaitCustomer returns once the copy has customerID, or is known to be caught up with the
// monolith's customer events without it, so that Charge answers for that customer as the
// monolith would. It must be called before Charge's unit of work (the idempotency
// middleware's), never in one: it waits, and it asks the bus how far behind the copy is. It
// returns ErrCustomerNotYetKnown when the copy is still behind after Options.CustomerWait,
// or when it cannot tell (the bus is unreachable).
func (s *Service) AwaitCustomer(ctx context.Context, customerID string) error {
	return s.customers.await(ctx, customerID)
}
