// Package domain holds the customers module's types and rules.
package domain

import (
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// Customer is a registered customer. Its HTTP form is contract.Customer.
type Customer struct {
	ID               string
	Name             string
	Email            string
	CreditLimitCents int64
	CreatedAt        time.Time
	// Version increases with every change; events carry it.
	Version int64
}

// Wire returns the customer as the HTTP contract shows it.
func (c Customer) Wire() contract.Customer {
	return contract.Customer{ID: c.ID, Name: c.Name, Email: c.Email, CreditLimitCents: c.CreditLimitCents,
		CreatedAt: contract.Timestamp(c.CreatedAt)}
}

// NormalizeEmail is how an address is stored and looked up: trimmed and lower-cased.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// NewCustomer is a registration request.
type NewCustomer struct {
	Name             string `json:"name"`
	Email            string `json:"email"`
	CreditLimitCents *int64 `json:"credit_limit_cents"`
}

// CreditLimit is a credit limit change.
type CreditLimit struct {
	CreditLimitCents *int64 `json:"credit_limit_cents"`
}

// Sentinel errors.
var (
	ErrNotFound   = fault.New(fault.NotFound, "customer_not_found", "customer not found")
	ErrEmailTaken = fault.New(fault.Conflict, "email_taken", "a customer with this email exists")
)

// Validate checks a registration.
func (n NewCustomer) Validate() error {
	var f fault.Fields
	f.Check(strings.TrimSpace(n.Name) != "", "name", "is required")
	f.Check(len(n.Name) <= 200, "name", "is longer than 200 characters")
	f.Check(strings.Contains(n.Email, "@") && len(n.Email) <= 254, "email", "is not an email address")
	checkCreditLimit(&f, n.CreditLimitCents)
	return f.Err()
}

// Validate checks a credit limit change.
func (c CreditLimit) Validate() error {
	var f fault.Fields
	checkCreditLimit(&f, c.CreditLimitCents)
	return f.Err()
}

func checkCreditLimit(f *fault.Fields, cents *int64) {
	f.Check(cents != nil, "credit_limit_cents", "is required")
	f.Check(cents == nil || (*cents >= 0 && *cents <= contract.MaxCents), "credit_limit_cents",
		"must be from 0 to %d", contract.MaxCents)
}
