// Package inventory is the monolith's inventory module: items, stock, and reservations held
// per order, then committed or released. Other modules use only this package.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/inventory/internal/db"
	"github.com/ficus-project/ficus/monolith/inventory/internal/domain"
	"github.com/ficus-project/ficus/monolith/inventory/internal/httpapi"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the module's name; its tables start with it.
const Module = "inventory"

// Source is the module's event source.
const Source = "/monolith/inventory"

// Types of the module's public API.
type (
	Item           = domain.Item
	NewItem        = domain.NewItem
	Line           = domain.Line
	PricedLine     = domain.PricedLine
	Reservation    = domain.Reservation
	NewReservation = domain.NewReservation
)

// Reservation states.
const (
	Held      = domain.Held
	Committed = domain.Committed
	Released  = domain.Released
)

// Sentinel errors.
var (
	ErrItemNotFound        = domain.ErrItemNotFound
	ErrSKUTaken            = domain.ErrSKUTaken
	ErrInsufficientStock   = domain.ErrInsufficientStock
	ErrReservationNotFound = domain.ErrReservationNotFound
	ErrReservationExists   = domain.ErrReservationExists
	ErrReservationState    = domain.ErrReservationState
)

// Service is the inventory module.
type Service struct {
	db  *gorm.DB
	now func() time.Time
}

// New returns the module on its own handle of db.
func New(gdb *gorm.DB) *Service {
	return &Service{db: store.Handle(gdb, Module), now: func() time.Time { return time.Now().UTC() }}
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g.
func (s *Service) RegisterRoutes(g *echo.Group) { httpapi.Register(g, s) }

// CreateItem adds an item.
func (s *Service) CreateItem(ctx context.Context, n NewItem) (Item, error) {
	if err := n.Validate(); err != nil {
		return Item{}, err
	}
	it := Item{SKU: n.SKU, Name: strings.TrimSpace(n.Name), PriceCents: *n.PriceCents, OnHand: *n.OnHand,
		Available: *n.OnHand, Version: 1, UpdatedAt: s.now()}
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := db.InsertItem(ctx, tx, it); err != nil {
			return err
		}
		return s.stockChanged(ctx, tx, it.SKU)
	})
	if err != nil {
		return Item{}, fmt.Errorf("creating item: %w", err)
	}
	return db.GetItem(ctx, store.Conn(ctx, s.db), it.SKU)
}

// Item returns one item.
func (s *Service) Item(ctx context.Context, sku string) (Item, error) {
	return db.GetItem(ctx, store.Conn(ctx, s.db), sku)
}

// Items returns every item.
func (s *Service) Items(ctx context.Context) ([]Item, error) {
	return db.ListItems(ctx, store.Conn(ctx, s.db))
}

// CountItems returns how many items there are.
func (s *Service) CountItems(ctx context.Context) (int64, error) {
	return db.CountItems(ctx, store.Conn(ctx, s.db))
}

// Restock adds quantity to an item's stock.
func (s *Service) Restock(ctx context.Context, sku string, quantity int) (Item, error) {
	if quantity <= 0 {
		return Item{}, domain.Restock{Quantity: &quantity}.Validate()
	}
	var out Item
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := db.Adjust(ctx, tx, sku, quantity, 0, s.now()); err != nil {
			return err
		}
		if err := s.stockChanged(ctx, tx, sku); err != nil {
			return err
		}
		var err error
		out, err = db.GetItem(ctx, tx, sku)
		return err
	})
	if err != nil {
		return Item{}, fmt.Errorf("restocking %s: %w", sku, err)
	}
	return out, nil
}

// Reserve holds stock for an order, at today's prices. Reserving again for the same order with
// the same lines returns the existing reservation (a retried saga step is harmless); other
// lines are ErrReservationExists.
func (s *Service) Reserve(ctx context.Context, n NewReservation) (Reservation, error) {
	if err := n.Validate(); err != nil {
		return Reservation{}, err
	}
	lines := slices.Clone(n.Lines)
	// A fixed order of row locks: two reservations never wait on each other.
	slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
	var out Reservation
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		existing, err := db.GetReservation(ctx, tx, n.OrderID)
		if err == nil {
			if !sameLines(existing.Lines, lines) {
				return domain.ErrReservationExists
			}
			out = existing
			return nil
		}
		if !errors.Is(err, domain.ErrReservationNotFound) {
			return err
		}
		now := s.now()
		r := Reservation{OrderID: n.OrderID, State: Held, UpdatedAt: now}
		for _, l := range lines {
			it, err := db.GetItem(ctx, tx, l.SKU)
			if err != nil {
				return fmt.Errorf("%w: %s", err, l.SKU)
			}
			if err := db.Adjust(ctx, tx, l.SKU, 0, l.Quantity, now); err != nil {
				return err
			}
			r.Lines = append(r.Lines, PricedLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: it.PriceCents})
			if err := s.stockChanged(ctx, tx, l.SKU); err != nil {
				return err
			}
		}
		if err := db.InsertReservation(ctx, tx, r); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("reserving stock for order %s: %w", n.OrderID, err)
	}
	return out, nil
}

// Commit turns a held reservation into a sale: the stock leaves on-hand. Committing a
// committed reservation is a no-op.
func (s *Service) Commit(ctx context.Context, orderID string) (Reservation, error) {
	return s.transition(ctx, orderID, "committing", func(r Reservation) (string, int, int, error) {
		switch r.State {
		case Held:
			return Committed, -1, -1, nil
		case Committed:
			return "", 0, 0, nil
		}
		return "", 0, 0, domain.ErrReservationState
	})
}

// Release gives a reservation's stock back: a held reservation stops holding it, a committed
// one returns it to on-hand (an order cancelled after the sale). Releasing twice is a no-op.
func (s *Service) Release(ctx context.Context, orderID string) (Reservation, error) {
	return s.transition(ctx, orderID, "releasing", func(r Reservation) (string, int, int, error) {
		switch r.State {
		case Held:
			return Released, 0, -1, nil
		case Committed:
			return Released, 1, 0, nil
		}
		return "", 0, 0, nil
	})
}

// transition moves a reservation on. step returns the new state ("" for none) and, per unit
// of each line, the change to on-hand and reserved.
func (s *Service) transition(ctx context.Context, orderID, verb string, step func(Reservation) (string, int, int, error)) (Reservation, error) {
	var out Reservation
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		r, err := db.GetReservation(ctx, tx, orderID)
		if err != nil {
			return err
		}
		to, onHand, reserved, err := step(r)
		if err != nil || to == "" {
			out = r
			return err
		}
		now := s.now()
		for _, l := range r.Lines {
			if err := db.Adjust(ctx, tx, l.SKU, onHand*l.Quantity, reserved*l.Quantity, now); err != nil {
				return err
			}
			if err := s.stockChanged(ctx, tx, l.SKU); err != nil {
				return err
			}
		}
		if err := db.SetReservationState(ctx, tx, orderID, r.State, to, now); err != nil {
			return err
		}
		r.State, r.UpdatedAt = to, now
		out = r
		return nil
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("%s reservation of order %s: %w", verb, orderID, err)
	}
	return out, nil
}

// Reservation returns an order's reservation.
func (s *Service) Reservation(ctx context.Context, orderID string) (Reservation, error) {
	return db.GetReservation(ctx, store.Conn(ctx, s.db), orderID)
}

// stockChanged records the SKU's absolute stock after a change, in the change's transaction.
func (s *Service) stockChanged(ctx context.Context, tx *gorm.DB, sku string) error {
	it, err := db.GetItem(ctx, tx, sku)
	if err != nil {
		return err
	}
	ev, err := event.New(Source, contract.TypeStockChanged, sku, contract.StockChanged{
		SKU: sku, OnHand: it.OnHand, Reserved: it.Reserved, Version: it.Version, Name: it.Name, PriceCents: it.PriceCents})
	if err != nil {
		return err
	}
	return outbox.Add(ctx, tx, ev)
}

func sameLines(have []PricedLine, want []Line) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i].SKU != want[i].SKU || have[i].Quantity != want[i].Quantity {
			return false
		}
	}
	return true
}
