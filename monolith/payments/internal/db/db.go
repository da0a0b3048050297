// Package db is the payments module's storage.
//
// Every function but Migrate takes a handle already bound to its caller's context and unit of
// work (store.Conn, or the tx of store.Write), so none takes a context of its own.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/payments/internal/domain"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the module's migrations.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "payments", migrations, "migrations")
}

type payment struct {
	ID          string `gorm:"primaryKey"`
	CustomerID  string
	AmountCents int64
	Reference   string
	Status      string
	CreatedAt   time.Time
	RefundedAt  *time.Time
}

func (payment) TableName() string { return "payments_payments" }

func (p payment) toDomain() domain.Payment {
	return domain.Payment{ID: p.ID, CustomerID: p.CustomerID, AmountCents: p.AmountCents, Reference: p.Reference,
		Status: p.Status, CreatedAt: p.CreatedAt, RefundedAt: p.RefundedAt}
}

// Insert stores a payment.
func Insert(tx *gorm.DB, p domain.Payment) error {
	err := tx.Exec(`INSERT INTO payments_payments (id, customer_id, amount_cents, reference, status, created_at, refunded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, p.ID, p.CustomerID, p.AmountCents, p.Reference, p.Status, p.CreatedAt, p.RefundedAt).Error
	if err != nil {
		return fmt.Errorf("inserting payment: %w", err)
	}
	return nil
}

// Get loads a payment.
func Get(tx *gorm.DB, id string) (domain.Payment, error) {
	var row payment
	err := tx.Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Payment{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Payment{}, fmt.Errorf("loading payment: %w", err)
	}
	return row.toDomain(), nil
}

type balance struct {
	CustomerID       string `gorm:"primaryKey"`
	OutstandingCents int64
}

func (balance) TableName() string { return "payments_balances" }

// Outstanding returns the total of a customer's captured, unrefunded payments.
func Outstanding(tx *gorm.DB, customerID string) (int64, error) {
	var cents int64
	err := tx.Raw(`SELECT outstanding_cents FROM payments_balances WHERE customer_id = ?`, customerID).Row().Scan(&cents)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("loading balance: %w", err)
	}
	return cents, nil
}

// AddOutstanding changes a customer's outstanding total by delta.
func AddOutstanding(tx *gorm.DB, customerID string, delta int64) error {
	if delta < 0 {
		// A refund: the row exists, since the payment it undoes was counted.
		err := tx.Model(&balance{}).Where("customer_id = ?", customerID).
			Update("outstanding_cents", gorm.Expr("outstanding_cents + ?", delta)).Error
		if err != nil {
			return fmt.Errorf("updating balance: %w", err)
		}
		return nil
	}
	err := tx.Exec(`INSERT INTO payments_balances (customer_id, outstanding_cents) VALUES (?, ?)
		ON CONFLICT (customer_id) DO UPDATE SET outstanding_cents = payments_balances.outstanding_cents + excluded.outstanding_cents`,
		customerID, delta).Error
	if err != nil {
		return fmt.Errorf("updating balance: %w", err)
	}
	return nil
}

// MarkRefunded moves a captured payment to refunded.
func MarkRefunded(tx *gorm.DB, id string, now time.Time) (bool, error) {
	res := tx.Model(&payment{}).Where("id = ? AND status = ?", id, domain.Captured).
		Updates(map[string]any{"status": domain.Refunded, "refunded_at": now})
	if res.Error != nil {
		return false, fmt.Errorf("refunding payment: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}
