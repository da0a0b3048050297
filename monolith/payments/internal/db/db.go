// Package db is the payments module's storage.
//
// Every function but Migrate takes a handle already bound to its caller's context and unit of
// work (store.Conn, or the tx of store.Write), so none takes a context of its own.
package db

import (
	"context"
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

// TakeCredit adds amount to a customer's outstanding total if that keeps it within limit,
// and reports whether it did. The check and the change are one statement: on PostgreSQL the
// upsert locks the balance row and re-checks the condition on its latest version, on SQLite
// it runs in the single writer's turn, so concurrent charges can never together take more
// than the limit.
func TakeCredit(tx *gorm.DB, customerID string, amount, limit int64) (bool, error) {
	if amount <= 0 || amount > limit {
		return false, nil
	}
	// limit - amount cannot overflow: both are within 0..contract.MaxCents.
	res := tx.Exec(`INSERT INTO payments_balances (customer_id, outstanding_cents) VALUES (?, ?)
		ON CONFLICT (customer_id) DO UPDATE SET outstanding_cents = payments_balances.outstanding_cents + excluded.outstanding_cents
		WHERE payments_balances.outstanding_cents <= ?`,
		customerID, amount, limit-amount)
	if res.Error != nil {
		return false, fmt.Errorf("taking credit: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}

// GiveCredit takes amount off a customer's outstanding total: a refund. The row exists, since
// the payment it undoes was counted.
func GiveCredit(tx *gorm.DB, customerID string, amount int64) error {
	err := tx.Model(&balance{}).Where("customer_id = ?", customerID).
		Update("outstanding_cents", gorm.Expr("outstanding_cents - ?", amount)).Error
	if err != nil {
		return fmt.Errorf("giving credit back: %w", err)
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
