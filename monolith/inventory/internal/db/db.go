// Package db is the inventory module's storage.
package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/inventory/internal/domain"
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
	return store.Migrate(ctx, db, "inventory", sub)
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

type reservation struct {
	OrderID   string `gorm:"primaryKey"`
	State     string
	UpdatedAt time.Time
}

func (reservation) TableName() string { return "inventory_reservations" }

type reservationLine struct {
	OrderID        string `gorm:"primaryKey"`
	SKU            string `gorm:"primaryKey"`
	Quantity       int
	UnitPriceCents int64
}

func (reservationLine) TableName() string { return "inventory_reservation_lines" }

// InsertItem stores a new item.
func InsertItem(ctx context.Context, tx *gorm.DB, it domain.Item) error {
	row := item{SKU: it.SKU, Name: it.Name, PriceCents: it.PriceCents, OnHand: it.OnHand, Reserved: it.Reserved, Version: it.Version, UpdatedAt: it.UpdatedAt}
	if err := tx.WithContext(ctx).Create(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return domain.ErrSKUTaken
		}
		return fmt.Errorf("inserting item: %w", err)
	}
	return nil
}

// GetItem loads an item.
func GetItem(ctx context.Context, tx *gorm.DB, sku string) (domain.Item, error) {
	var row item
	err := tx.WithContext(ctx).Where("sku = ?", sku).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Item{}, domain.ErrItemNotFound
	}
	if err != nil {
		return domain.Item{}, fmt.Errorf("loading item: %w", err)
	}
	return row.toDomain(), nil
}

// ListItems returns every item by SKU.
func ListItems(ctx context.Context, tx *gorm.DB) ([]domain.Item, error) {
	var rows []item
	if err := tx.WithContext(ctx).Order("sku").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing items: %w", err)
	}
	out := make([]domain.Item, len(rows))
	for i, r := range rows {
		out[i] = r.toDomain()
	}
	return out, nil
}

// Adjust changes an item's on-hand and reserved counts by the deltas, bumping its version. It
// changes nothing and returns ErrInsufficientStock when the result would be negative or more
// would be reserved than is on hand.
func Adjust(ctx context.Context, tx *gorm.DB, sku string, dOnHand, dReserved int, now time.Time) error {
	res := tx.WithContext(ctx).Model(&item{}).
		Where("sku = ? AND on_hand + ? >= 0 AND reserved + ? >= 0 AND on_hand + ? >= reserved + ?", sku, dOnHand, dReserved, dOnHand, dReserved).
		Updates(map[string]any{
			"on_hand":    gorm.Expr("on_hand + ?", dOnHand),
			"reserved":   gorm.Expr("reserved + ?", dReserved),
			"version":    gorm.Expr("version + 1"),
			"updated_at": now,
		})
	if res.Error != nil {
		return fmt.Errorf("adjusting stock of %s: %w", sku, res.Error)
	}
	if res.RowsAffected == 0 {
		if _, err := GetItem(ctx, tx, sku); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", domain.ErrInsufficientStock, sku)
	}
	return nil
}

// InsertReservation stores a reservation and its lines.
func InsertReservation(ctx context.Context, tx *gorm.DB, r domain.Reservation) error {
	tx = tx.WithContext(ctx)
	if err := tx.Create(&reservation{OrderID: r.OrderID, State: r.State, UpdatedAt: r.UpdatedAt}).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return domain.ErrReservationExists
		}
		return fmt.Errorf("inserting reservation: %w", err)
	}
	lines := make([]reservationLine, len(r.Lines))
	for i, l := range r.Lines {
		lines[i] = reservationLine{OrderID: r.OrderID, SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	if err := tx.Create(&lines).Error; err != nil {
		return fmt.Errorf("inserting reservation lines: %w", err)
	}
	return nil
}

// GetReservation loads a reservation and its lines.
func GetReservation(ctx context.Context, tx *gorm.DB, orderID string) (domain.Reservation, error) {
	tx = tx.WithContext(ctx)
	var r reservation
	err := tx.Where("order_id = ?", orderID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Reservation{}, domain.ErrReservationNotFound
	}
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("loading reservation: %w", err)
	}
	var lines []reservationLine
	if err := tx.Where("order_id = ?", orderID).Order("sku").Find(&lines).Error; err != nil {
		return domain.Reservation{}, fmt.Errorf("loading reservation lines: %w", err)
	}
	out := domain.Reservation{OrderID: r.OrderID, State: r.State, UpdatedAt: r.UpdatedAt, Lines: make([]domain.PricedLine, len(lines))}
	for i, l := range lines {
		out.Lines[i] = domain.PricedLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out, nil
}

// SetReservationState moves a reservation from one state to another.
func SetReservationState(ctx context.Context, tx *gorm.DB, orderID, from, to string, now time.Time) error {
	res := tx.WithContext(ctx).Model(&reservation{}).Where("order_id = ? AND state = ?", orderID, from).
		Updates(map[string]any{"state": to, "updated_at": now})
	if res.Error != nil {
		return fmt.Errorf("updating reservation: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return domain.ErrReservationState
	}
	return nil
}

// CountItems returns how many items there are.
func CountItems(ctx context.Context, tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.WithContext(ctx).Model(&item{}).Count(&n).Error
	return n, err
}
