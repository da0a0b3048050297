// Package db is the orders module's storage.
package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the module's migrations.
func Migrate(ctx context.Context, db *gorm.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return store.Migrate(ctx, db, "orders", sub)
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
func Insert(ctx context.Context, tx *gorm.DB, o domain.Order) error {
	tx = tx.WithContext(ctx)
	row := order{ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, TotalCents: o.TotalCents, PaymentID: o.PaymentID, CreatedAt: o.CreatedAt}
	if err := tx.Create(&row).Error; err != nil {
		return fmt.Errorf("inserting order: %w", err)
	}
	lines := make([]line, len(o.Lines))
	for i, l := range o.Lines {
		lines[i] = line{OrderID: o.ID, SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	if err := tx.Create(&lines).Error; err != nil {
		return fmt.Errorf("inserting order lines: %w", err)
	}
	return nil
}

// Get loads an order with its lines.
func Get(ctx context.Context, tx *gorm.DB, id string) (domain.Order, error) {
	var row order
	err := tx.WithContext(ctx).Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Order{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Order{}, fmt.Errorf("loading order: %w", err)
	}
	out, err := withLines(ctx, tx, []order{row})
	if err != nil {
		return domain.Order{}, err
	}
	return out[0], nil
}

// ListByCustomer returns a customer's orders, newest first.
func ListByCustomer(ctx context.Context, tx *gorm.DB, customerID string) ([]domain.Order, error) {
	var rows []order
	if err := tx.WithContext(ctx).Where("customer_id = ?", customerID).Order("created_at DESC, id DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	return withLines(ctx, tx, rows)
}

func withLines(ctx context.Context, tx *gorm.DB, rows []order) ([]domain.Order, error) {
	out := make([]domain.Order, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var lines []line
	if err := tx.WithContext(ctx).Where("order_id IN ?", ids).Order("sku").Find(&lines).Error; err != nil {
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
func MarkCancelled(ctx context.Context, tx *gorm.DB, id string, now time.Time) (bool, error) {
	res := tx.WithContext(ctx).Model(&order{}).Where("id = ? AND status = ?", id, domain.Placed).
		Updates(map[string]any{"status": domain.Cancelled, "cancelled_at": now})
	if res.Error != nil {
		return false, fmt.Errorf("cancelling order: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}
