// Package domain holds the payments module's types and the simulated gateway's rules.
package domain

import (
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// Payment states.
const (
	Captured = "captured"
	Refunded = "refunded"
)

// Payment is a captured (and perhaps refunded) charge. Its HTTP form is contract.Payment.
type Payment struct {
	ID          string
	CustomerID  string
	AmountCents int64
	Reference   string
	Status      string
	CreatedAt   time.Time
	RefundedAt  *time.Time
}

// Wire returns the payment as the HTTP contract shows it.
func (p Payment) Wire() contract.Payment {
	return contract.Payment{ID: p.ID, CustomerID: p.CustomerID, AmountCents: p.AmountCents, Reference: p.Reference,
		Status: p.Status, CreatedAt: contract.Timestamp(p.CreatedAt), RefundedAt: contract.OptionalTimestamp(p.RefundedAt)}
}

// Charge asks to charge a customer.
type Charge struct {
	CustomerID  string `json:"customer_id"`
	AmountCents *int64 `json:"amount_cents"`
	Reference   string `json:"reference"`
}

// Payer is what the gateway needs to know of a customer.
type Payer struct {
	ID               string
	Email            string
	CreditLimitCents int64
}

// Sentinel errors.
var (
	ErrNotFound           = fault.New(fault.NotFound, "payment_not_found", "payment not found")
	ErrCustomerNotFound   = fault.New(fault.NotFound, "customer_not_found", "customer not found")
	ErrDeclined           = fault.New(fault.Declined, "payment_declined", "payment declined")
	ErrGatewayUnavailable = fault.New(fault.Unavailable, "gateway_unavailable", "the payment gateway is unavailable")
)

// Validate checks a charge request.
func (c Charge) Validate() error {
	var f fault.Fields
	f.Check(c.CustomerID != "", "customer_id", "is required")
	f.Check(c.AmountCents != nil, "amount_cents", "is required")
	f.Check(c.AmountCents == nil || (*c.AmountCents > 0 && *c.AmountCents <= contract.MaxCents), "amount_cents",
		"must be from 1 to %d", contract.MaxCents)
	f.Check(strings.TrimSpace(c.Reference) != "" && len(c.Reference) <= 200, "reference", "must be 1 to 200 characters")
	return f.Err()
}

// Gateway rules of the simulated payment gateway, deterministic so tests and demos can
// provoke every outcome. See docs/api.md.
const (
	DeclineDomain = "@decline.test"
	OutageDomain  = "@outage.test"
)

// Screen applies the gateway's rules that depend on who pays, not on how much: a card that
// is always declined, a gateway outage. The credit rule (a charge may not take a customer's
// captured, unrefunded payments past their credit limit) is checked by the database in the
// same statement that takes the credit (db.TakeCredit), so two charges at once cannot both
// pass it.
func Screen(p Payer) error {
	switch {
	case strings.HasSuffix(p.Email, DeclineDomain):
		return fault.Wrapf(ErrDeclined, "card declined")
	case strings.HasSuffix(p.Email, OutageDomain):
		return ErrGatewayUnavailable
	}
	return nil
}

// ErrCreditLimit is a charge refused because it would take the customer past their credit
// limit.
var ErrCreditLimit = fault.Wrapf(ErrDeclined, "credit limit exceeded")
