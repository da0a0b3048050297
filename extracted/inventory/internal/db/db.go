// Package db is the inventory service's storage.
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
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/inventory/internal/domain"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the service's migrations.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "inventory", migrations, "migrations")
}

type item struct {
	SKU        string `gorm:"primaryKey"`
	Name       string
	PriceCents int64
	OnHand     int
	Reserved   int
	Version    int64
	UpdatedAt  time.Time
}

func (item) TableName() string { return "inventory_items" }

func (i item) toDomain() domain.Item {
	return domain.Item{SKU: i.SKU, Name: i.Name, PriceCents: i.PriceCents, OnHand: i.OnHand, Reserved: i.Reserved,
		Available: i.OnHand - i.Reserved, Version: i.Version, UpdatedAt: i.UpdatedAt}
}

// InsertItem stores a new item.
func InsertItem(tx *gorm.DB, it domain.Item) error {
	row := item{SKU: it.SKU, Name: it.Name, PriceCents: it.PriceCents, OnHand: it.OnHand, Reserved: it.Reserved, Version: it.Version, UpdatedAt: it.UpdatedAt}
	if err := tx.Create(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return domain.ErrSKUTaken
		}
		return fmt.Errorf("inserting item: %w", err)
	}
	return nil
}

// GetItem loads an item.
func GetItem(tx *gorm.DB, sku string) (domain.Item, error) {
	var row item
	err := tx.Where("sku = ?", sku).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Item{}, domain.ErrItemNotFound
	}
	if err != nil {
		return domain.Item{}, fmt.Errorf("loading item: %w", err)
	}
	return row.toDomain(), nil
}

// ListItems returns up to limit items whose SKU sorts after afterSKU ("" for the first), by
// SKU.
func ListItems(tx *gorm.DB, afterSKU string, limit int) ([]domain.Item, error) {
	var rows []item
	if err := tx.Where("sku > ?", afterSKU).Order("sku").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing items: %w", err)
	}
	out := make([]domain.Item, len(rows))
	for i, r := range rows {
		out[i] = r.toDomain()
	}
	return out, nil
}

// Adjust changes an item's on-hand and reserved counts by the deltas, bumping its version, and
// returns the item as the change left it. It changes nothing and returns ErrInsufficientStock
// when the result would be negative or more would be reserved than is on hand.
func Adjust(tx *gorm.DB, sku string, dOnHand, dReserved int, now time.Time) (domain.Item, error) {
	// One statement: RETURNING gives the new figures (and the price and name the caller
	// needs), so no read before or after the change.
	it := domain.Item{SKU: sku, UpdatedAt: now}
	err := tx.Raw(`UPDATE inventory_items
		SET on_hand = on_hand + ?, reserved = reserved + ?, version = version + 1, updated_at = ?
		WHERE sku = ? AND on_hand + ? >= 0 AND reserved + ? >= 0 AND on_hand + ? >= reserved + ?
		RETURNING name, price_cents, on_hand, reserved, version`,
		dOnHand, dReserved, now, sku, dOnHand, dReserved, dOnHand, dReserved).
		Row().Scan(&it.Name, &it.PriceCents, &it.OnHand, &it.Reserved, &it.Version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := GetItem(tx, sku); err != nil {
			return domain.Item{}, err
		}
		return domain.Item{}, fmt.Errorf("%w: %s", domain.ErrInsufficientStock, sku)
	}
	if err != nil {
		return domain.Item{}, fmt.Errorf("adjusting stock of %s: %w", sku, err)
	}
	it.Available = it.OnHand - it.Reserved
	return it, nil
}

// CreateReservation stores a new, empty reservation; created is false when the order already
// has one (and nothing was written).
func CreateReservation(tx *gorm.DB, orderID, state string, now time.Time) (created bool, err error) {
	res := tx.Exec(`INSERT INTO inventory_reservations (order_id, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (order_id) DO NOTHING`, orderID, state, now)
	if res.Error != nil {
		return false, fmt.Errorf("inserting reservation: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}

// InsertReservationLines stores a reservation's lines.
func InsertReservationLines(tx *gorm.DB, orderID string, lines []domain.PricedLine) error {
	var q strings.Builder
	q.WriteString(`INSERT INTO inventory_reservation_lines (order_id, sku, quantity, unit_price_cents) VALUES `)
	args := make([]any, 0, 4*len(lines))
	for i, l := range lines {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?)")
		args = append(args, orderID, l.SKU, l.Quantity, l.UnitPriceCents)
	}
	if err := tx.Exec(q.String(), args...).Error; err != nil {
		return fmt.Errorf("inserting reservation lines: %w", err)
	}
	return nil
}

// GetReservation loads a reservation and its lines.
func GetReservation(tx *gorm.DB, orderID string) (domain.Reservation, error) {
	// One query for the reservation and its lines.
	rows, err := tx.Raw(`SELECT r.state, r.updated_at, l.sku, l.quantity, l.unit_price_cents
		FROM inventory_reservations r LEFT JOIN inventory_reservation_lines l ON l.order_id = r.order_id
		WHERE r.order_id = ? ORDER BY l.sku`, orderID).Rows()
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("loading reservation: %w", err)
	}
	defer rows.Close()
	out := domain.Reservation{OrderID: orderID, Lines: []domain.PricedLine{}}
	found := false
	for rows.Next() {
		var (
			sku        sql.NullString
			qty, price sql.NullInt64
		)
		if err := rows.Scan(&out.State, &out.UpdatedAt, &sku, &qty, &price); err != nil {
			return domain.Reservation{}, fmt.Errorf("loading reservation: %w", err)
		}
		found = true
		if sku.Valid {
			out.Lines = append(out.Lines, domain.PricedLine{SKU: sku.String, Quantity: int(qty.Int64), UnitPriceCents: price.Int64})
		}
	}
	if err := rows.Err(); err != nil {
		return domain.Reservation{}, fmt.Errorf("loading reservation: %w", err)
	}
	if !found {
		return domain.Reservation{}, domain.ErrReservationNotFound
	}
	return out, nil
}

// SetReservationState moves a reservation from one state to another.
func SetReservationState(tx *gorm.DB, orderID, from, to string, now time.Time) error {
	res := tx.Exec(`UPDATE inventory_reservations SET state = ?, updated_at = ? WHERE order_id = ? AND state = ?`,
		to, now, orderID, from)
	if res.Error != nil {
		return fmt.Errorf("updating reservation: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return domain.ErrReservationState
	}
	return nil
}

// CountItems returns how many items there are.
func CountItems(tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.Model(&item{}).Count(&n).Error
	return n, err
}
