package monolith

import (
	"context"
	"errors"
	"fmt"

	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
)

// Demo is what Seed created (or found): enough to place an order, and a customer for each
// behaviour of the simulated gateway.
type Demo struct {
	// CustomerID is a customer with a generous credit limit (DemoEmail).
	CustomerID string
	// SKU is an item in stock.
	SKU string
	// Customers are the demo customers found in the database, in the order of
	// DemoCustomers; one the database lacks (it held other data) is left out.
	Customers []DemoCustomer
	// Seeded is false when the database already had data and nothing was added.
	Seeded bool
}

// DemoCustomer is one demo customer and what it demonstrates.
type DemoCustomer struct {
	ID    string
	Name  string
	Email string
	// CreditLimitCents is the customer's credit limit when seeded.
	CreditLimitCents int64
	// Demonstrates says, in a phrase, what ordering as this customer shows.
	Demonstrates string
}

// DemoEmail identifies the demo customer.
const DemoEmail = "ada@example.com"

// DemoCustomers are the customers Seed adds, ids left empty.
func DemoCustomers() []DemoCustomer {
	return []DemoCustomer{
		{Name: "Ada Lovelace", Email: DemoEmail, CreditLimitCents: 500_000, Demonstrates: "orders that succeed"},
		{Name: "Bob Decline", Email: "bob@decline.test", CreditLimitCents: 500_000,
			Demonstrates: "a declined card: every charge is 402 payment_declined"},
		{Name: "Olga Outage", Email: "olga@outage.test", CreditLimitCents: 500_000,
			Demonstrates: "a gateway outage: 503 gateway_unavailable, retry with the same Idempotency-Key"},
		{Name: "Cass Careful", Email: "cass@example.com", CreditLimitCents: 2_000,
			Demonstrates: "the credit limit: orders past 20.00 in all are 402 payment_declined"},
	}
}

// Seed adds demo customers and items when the database has none, and returns the demo ids.
func (m *Monolith) Seed(ctx context.Context) (Demo, error) {
	nc, err := m.Customers.Count(ctx)
	if err != nil {
		return Demo{}, fmt.Errorf("seeding: %w", err)
	}
	ni, err := m.Inventory.CountItems(ctx)
	if err != nil {
		return Demo{}, fmt.Errorf("seeding: %w", err)
	}
	demo := Demo{SKU: "BOOK-GO-1"}
	if nc == 0 && ni == 0 {
		demo.Seeded = true
		for _, c := range DemoCustomers() {
			limit := c.CreditLimitCents
			if _, err := m.Customers.Create(ctx, customers.NewCustomer{Name: c.Name, Email: c.Email, CreditLimitCents: &limit}); err != nil {
				return Demo{}, fmt.Errorf("seeding customer %s: %w", c.Email, err)
			}
		}
		for _, it := range []struct {
			sku, name     string
			price, onHand int64
		}{
			{"BOOK-GO-1", "The Go Programming Language", 3_999, 500},
			{"MUG-FICUS", "Ficus mug", 1_299, 200},
			{"STICKER-FIG", "Strangler fig sticker", 199, 10_000},
			{"LAMP-RARE", "Rare lamp (one left)", 25_000, 1},
		} {
			price, onHand := it.price, int(it.onHand)
			if _, err := m.Inventory.CreateItem(ctx, inventory.NewItem{SKU: it.sku, Name: it.name, PriceCents: &price, OnHand: &onHand}); err != nil {
				return Demo{}, fmt.Errorf("seeding item %s: %w", it.sku, err)
			}
		}
	}
	for _, dc := range DemoCustomers() {
		c, err := m.Customers.ByEmail(ctx, dc.Email)
		if errors.Is(err, customers.ErrNotFound) {
			continue
		}
		if err != nil {
			return Demo{}, fmt.Errorf("seeding: %w", err)
		}
		dc.ID = c.ID
		demo.Customers = append(demo.Customers, dc)
		if dc.Email == DemoEmail {
			demo.CustomerID = c.ID
		}
	}
	return demo, nil
}
