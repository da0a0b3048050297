package monolith

import (
	"context"
	"errors"
	"fmt"

	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
)

// Demo is what Seed created (or found): enough to place an order.
type Demo struct {
	// CustomerID is a customer with a generous credit limit.
	CustomerID string
	// SKU is an item in stock.
	SKU string
	// Seeded is false when the database already had data and nothing was added.
	Seeded bool
}

// DemoEmail identifies the demo customer.
const DemoEmail = "ada@example.com"

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
		for _, c := range []struct {
			name, email string
			limit       int64
		}{
			{"Ada Lovelace", DemoEmail, 500_000},
			{"Bob Decline", "bob@decline.test", 500_000},
			{"Olga Outage", "olga@outage.test", 500_000},
			{"Cass Careful", "cass@example.com", 2_000},
		} {
			limit := c.limit
			if _, err := m.Customers.Create(ctx, customers.NewCustomer{Name: c.name, Email: c.email, CreditLimitCents: &limit}); err != nil {
				return Demo{}, fmt.Errorf("seeding customer %s: %w", c.email, err)
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
	c, err := m.Customers.ByEmail(ctx, DemoEmail)
	if errors.Is(err, customers.ErrNotFound) {
		return demo, nil
	}
	if err != nil {
		return Demo{}, fmt.Errorf("seeding: %w", err)
	}
	demo.CustomerID = c.ID
	return demo, nil
}
