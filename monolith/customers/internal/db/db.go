// Package db is the customers module's storage: its tables, its migrations, its queries.
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

	"github.com/ficus-project/ficus/monolith/customers/internal/domain"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the module's migrations.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "customers", migrations, "migrations")
}

type customer struct {
	ID               string `gorm:"primaryKey"`
	Name             string
	Email            string
	CreditLimitCents int64
	Version          int64
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

func (customer) TableName() string { return "customers_customers" }

func (c customer) toDomain() domain.Customer {
	return domain.Customer{ID: c.ID, Name: c.Name, Email: c.Email, CreditLimitCents: c.CreditLimitCents, CreatedAt: c.CreatedAt, Version: c.Version}
}

func fromDomain(c domain.Customer) customer {
	return customer{ID: c.ID, Name: c.Name, Email: c.Email, CreditLimitCents: c.CreditLimitCents, Version: c.Version, CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt}
}

// Insert stores a new customer.
func Insert(tx *gorm.DB, c domain.Customer) error {
	row := fromDomain(c)
	if err := tx.Create(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return domain.ErrEmailTaken
		}
		return fmt.Errorf("inserting customer: %w", err)
	}
	return nil
}

// Get loads a customer.
func Get(tx *gorm.DB, id string) (domain.Customer, error) {
	// Every order reads its customer (twice): scanned directly, without gorm's reflection.
	c := domain.Customer{ID: id}
	err := tx.Raw(`SELECT name, email, credit_limit_cents, created_at, version FROM customers_customers WHERE id = ?`, id).
		Row().Scan(&c.Name, &c.Email, &c.CreditLimitCents, &c.CreatedAt, &c.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Customer{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Customer{}, fmt.Errorf("loading customer: %w", err)
	}
	return c, nil
}

// ByEmail loads the customer with email.
func ByEmail(tx *gorm.DB, email string) (domain.Customer, error) {
	var row customer
	err := tx.Where("email = ?", email).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Customer{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Customer{}, fmt.Errorf("loading customer: %w", err)
	}
	return row.toDomain(), nil
}

// Count returns how many customers there are.
func Count(tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.Model(&customer{}).Count(&n).Error
	return n, err
}

// SetCreditLimit changes a customer's limit and bumps the version.
func SetCreditLimit(tx *gorm.DB, id string, cents int64, now time.Time) error {
	res := tx.Model(&customer{}).Where("id = ?", id).
		Updates(map[string]any{"credit_limit_cents": cents, "version": gorm.Expr("version + 1"), "updated_at": now})
	if res.Error != nil {
		return fmt.Errorf("updating credit limit: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return domain.ErrNotFound
	}
	return nil
}

// List returns up to limit customers whose id sorts after afterID ("" for the first), by id.
func List(tx *gorm.DB, afterID string, limit int) ([]domain.Customer, error) {
	var rows []customer
	if err := tx.Where("id > ?", afterID).Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing customers: %w", err)
	}
	out := make([]domain.Customer, len(rows))
	for i, r := range rows {
		out[i] = r.toDomain()
	}
	return out, nil
}
