// Package db is the orders module's storage.
//
// Every function but Migrate takes a handle already bound to its caller's context and unit of
// work (store.Conn, or the tx of store.Write), so none takes a context of its own.
package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the module's migrations.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "orders", migrations, "migrations")
}

type order struct {
	ID          string `gorm:"primaryKey"`
	CustomerID  string
	Status      string
	TotalCents  int64
	PaymentID   string
	CreatedAt   time.Time
	CancelledAt *time.Time
}

func (order) TableName() string { return "orders_orders" }

type line struct {
	OrderID        string `gorm:"primaryKey"`
	SKU            string `gorm:"primaryKey"`
	Quantity       int
	UnitPriceCents int64
}

func (line) TableName() string { return "orders_lines" }

// Insert stores an order and its lines.
func Insert(tx *gorm.DB, o domain.Order) error {
	err := tx.Exec(`INSERT INTO orders_orders (id, customer_id, status, total_cents, payment_id, created_at, cancelled_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, o.ID, o.CustomerID, o.Status, o.TotalCents, o.PaymentID, o.CreatedAt, o.CancelledAt).Error
	if err != nil {
		return fmt.Errorf("inserting order: %w", err)
	}
	if len(o.Lines) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO orders_lines (order_id, sku, quantity, unit_price_cents) VALUES `)
	args := make([]any, 0, 4*len(o.Lines))
	for i, l := range o.Lines {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?)")
		args = append(args, o.ID, l.SKU, l.Quantity, l.UnitPriceCents)
	}
	if err := tx.Exec(q.String(), args...).Error; err != nil {
		return fmt.Errorf("inserting order lines: %w", err)
	}
	return nil
}

// Get loads an order with its lines.
func Get(tx *gorm.DB, id string) (domain.Order, error) {
	var row order
	err := tx.Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Order{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Order{}, fmt.Errorf("loading order: %w", err)
	}
	out, err := withLines(tx, []order{row})
	if err != nil {
		return domain.Order{}, err
	}
	return out[0], nil
}

// ListByCustomer returns up to limit of a customer's orders with their lines, newest first
// (by created_at, then id), after the order at key after (nil for the first page). The
// keyset condition lets the (customer_id, created_at) index find the page without reading
// the pages before it: "created_at <= ?" is the index range, and the OR only filters the
// orders that share the cursor's creation time (written as one OR of both columns, SQLite
// scans the customer's orders from the newest on every page).
func ListByCustomer(tx *gorm.DB, customerID string, after *domain.Key, limit int) ([]domain.Order, error) {
	q := tx.Where("customer_id = ?", customerID)
	if after != nil {
		q = q.Where("created_at <= ? AND (created_at < ? OR id < ?)", after.CreatedAt, after.CreatedAt, after.ID)
	}
	var rows []order
	if err := q.Order("created_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	return withLines(tx, rows)
}

func withLines(tx *gorm.DB, rows []order) ([]domain.Order, error) {
	out := make([]domain.Order, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var lines []line
	if err := tx.Where("order_id IN ?", ids).Order("sku").Find(&lines).Error; err != nil {
		return nil, fmt.Errorf("loading order lines: %w", err)
	}
	byOrder := map[string][]domain.Line{}
	for _, l := range lines {
		byOrder[l.OrderID] = append(byOrder[l.OrderID], domain.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents})
	}
	for i, r := range rows {
		out[i] = domain.Order{ID: r.ID, CustomerID: r.CustomerID, Status: r.Status, TotalCents: r.TotalCents,
			PaymentID: r.PaymentID, CreatedAt: r.CreatedAt, CancelledAt: r.CancelledAt, Lines: byOrder[r.ID]}
		if out[i].Lines == nil {
			out[i].Lines = []domain.Line{}
		}
	}
	return out, nil
}

// MarkCancelled moves a placed order to cancelled; it reports whether it did.
func MarkCancelled(tx *gorm.DB, id string, now time.Time) (bool, error) {
	res := tx.Model(&order{}).Where("id = ? AND status = ?", id, domain.Placed).
		Updates(map[string]any{"status": domain.Cancelled, "cancelled_at": now})
	if res.Error != nil {
		return false, fmt.Errorf("cancelling order: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}
