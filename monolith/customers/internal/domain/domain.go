// Package domain holds the customers module's types and rules.
package domain

import (
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/fault"
)

// Customer is a registered customer.
type Customer struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	Email            string    `json:"email"`
	CreditLimitCents int64     `json:"credit_limit_cents"`
	CreatedAt        time.Time `json:"created_at"`
	// Version increases with every change; events carry it.
	Version int64 `json:"-"`
}

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
	f.Check(n.CreditLimitCents != nil, "credit_limit_cents", "is required")
	f.Check(n.CreditLimitCents == nil || *n.CreditLimitCents >= 0, "credit_limit_cents", "must not be negative")
	return f.Err()
}

// Validate checks a credit limit change.
func (c CreditLimit) Validate() error {
	var f fault.Fields
	f.Check(c.CreditLimitCents != nil, "credit_limit_cents", "is required")
	f.Check(c.CreditLimitCents == nil || *c.CreditLimitCents >= 0, "credit_limit_cents", "must not be negative")
	return f.Err()
}
