// Package inventory is the extracted inventory service: items, stock, and reservations held
// per order, then committed, released or returned, in a database of its own, behind the same
// HTTP contract as the monolith's inventory module it replaces (platform/contract). Open
// assembles the service; Service is its domain API.
//
// It was cut out of monolith/inventory and never imports monolith/: extracted/README.md says
// what was copied, what was rewritten, and why.
package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/inventory/internal/db"
	"github.com/ficus-project/ficus/extracted/inventory/internal/domain"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the name the service's tables start with: the same tables, with the same
// columns, as the monolith's module, so `ficus migrate inventory` copies rows as they are.
const Module = "inventory"

// Source is the service's CloudEvents source: its events have the monolith module's types,
// and this source tells them apart.
const Source = "/services/inventory"

// Types of the service's Go API.
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
	Returned  = domain.Returned
)

// Sentinel errors.
var (
	ErrItemNotFound        = domain.ErrItemNotFound
	ErrSKUTaken            = domain.ErrSKUTaken
	ErrInsufficientStock   = domain.ErrInsufficientStock
	ErrReservationNotFound = domain.ErrReservationNotFound
	ErrReservationExists   = domain.ErrReservationExists
	ErrReservationState    = domain.ErrReservationState
	// ErrReservationCommitted refuses Release of sold stock; Return puts it back.
	ErrReservationCommitted = domain.ErrReservationCommitted
	// ErrStockLimit is a change that would put more than contract.MaxStock on hand.
	ErrStockLimit = domain.ErrStockLimit
)

// Service is the inventory service's domain API.
type Service struct {
	db  *gorm.DB
	now func() time.Time
}

// New returns the service on its own handle of db.
func New(gdb *gorm.DB) *Service {
	return &Service{db: store.Handle(gdb, Module), now: func() time.Time { return time.Now().UTC() }}
}

// Migrate applies the service's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// CreateItem adds an item.
func (s *Service) CreateItem(ctx context.Context, n NewItem) (Item, error) {
	if err := n.Validate(); err != nil {
		return Item{}, err
	}
	it := Item{SKU: n.SKU, Name: strings.TrimSpace(n.Name), PriceCents: *n.PriceCents, OnHand: *n.OnHand,
		Available: *n.OnHand, Version: 1, UpdatedAt: s.now()}
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := db.InsertItem(tx, it); err != nil {
			return err
		}
		ev, err := stockChanged(it)
		if err != nil {
			return err
		}
		return outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return Item{}, fmt.Errorf("creating item: %w", err)
	}
	return db.GetItem(store.Conn(ctx, s.db), it.SKU)
}

// Item returns one item.
func (s *Service) Item(ctx context.Context, sku string) (Item, error) {
	return db.GetItem(store.Conn(ctx, s.db), sku)
}

// Items returns up to limit items by SKU, after the one with SKU afterSKU ("" for the first
// page).
func (s *Service) Items(ctx context.Context, afterSKU string, limit int) ([]Item, error) {
	return db.ListItems(store.Conn(ctx, s.db), afterSKU, limit)
}

// CountItems returns how many items there are.
func (s *Service) CountItems(ctx context.Context) (int64, error) {
	return db.CountItems(store.Conn(ctx, s.db))
}

// Restock adds quantity to an item's stock. Stock on hand past contract.MaxStock is refused
// (ErrStockLimit, on the field quantity) and changes nothing.
func (s *Service) Restock(ctx context.Context, sku string, quantity int) (Item, error) {
	if err := (domain.Restock{Quantity: &quantity}).Validate(); err != nil {
		return Item{}, err
	}
	var out Item
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		var err error
		if out, err = db.Adjust(tx, sku, quantity, 0, s.now()); err != nil {
			return err
		}
		// Checked on the figure the update produced, under its row lock, so concurrent
		// restocks cannot pass the bound together; the error rolls the update back.
		if out.OnHand > contract.MaxStock {
			e := *domain.ErrStockLimit
			e.Fields = []fault.Field{{Name: "quantity", Msg: fmt.Sprintf("%d on hand plus %d is over %d", out.OnHand-quantity, quantity, contract.MaxStock)}}
			return &e
		}
		ev, err := stockChanged(out)
		if err != nil {
			return err
		}
		return outbox.Add(ctx, tx, ev)
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
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		now := s.now()
		// Insert first: a retried step finds the order's reservation without a separate
		// look. Whatever fails after this rolls back with the transaction.
		created, err := db.CreateReservation(tx, n.OrderID, Held, now)
		if err != nil {
			return err
		}
		if !created {
			existing, err := db.GetReservation(tx, n.OrderID)
			if err != nil {
				return err
			}
			if !sameLines(existing.Lines, lines) {
				return domain.ErrReservationExists
			}
			out = existing
			return nil
		}
		r := Reservation{OrderID: n.OrderID, State: Held, UpdatedAt: now, Lines: make([]PricedLine, 0, len(lines))}
		evs := make([]event.Event, 0, len(lines))
		for _, l := range lines {
			it, err := db.Adjust(tx, l.SKU, 0, l.Quantity, now)
			if err != nil {
				return err
			}
			r.Lines = append(r.Lines, PricedLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: it.PriceCents})
			ev, err := stockChanged(it)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		if err := db.InsertReservationLines(tx, n.OrderID, r.Lines); err != nil {
			return err
		}
		out = r
		return outbox.Add(ctx, tx, evs...)
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

// Release ends a hold on stock that was never sold. Releasing a released reservation is a
// no-op; a committed one is ErrReservationCommitted (its stock was sold: Return undoes a
// sale), a returned one ErrReservationState.
func (s *Service) Release(ctx context.Context, orderID string) (Reservation, error) {
	return s.transition(ctx, orderID, "releasing", func(r Reservation) (string, int, int, error) {
		switch r.State {
		case Held:
			return Released, 0, -1, nil
		case Released:
			return "", 0, 0, nil
		case Committed:
			return "", 0, 0, domain.ErrReservationCommitted
		}
		return "", 0, 0, domain.ErrReservationState
	})
}

// Return puts a committed reservation's stock back on hand: the sale is undone (an order
// cancelled after it was placed). Returning a returned reservation is a no-op; one that was
// never committed is ErrReservationState.
func (s *Service) Return(ctx context.Context, orderID string) (Reservation, error) {
	return s.transition(ctx, orderID, "returning", func(r Reservation) (string, int, int, error) {
		switch r.State {
		case Committed:
			return Returned, 1, 0, nil
		case Returned:
			return "", 0, 0, nil
		}
		return "", 0, 0, domain.ErrReservationState
	})
}

// transition moves a reservation on. step returns the new state ("" for none) and, per unit
// of each line, the change to on-hand and reserved.
func (s *Service) transition(ctx context.Context, orderID, verb string, step func(Reservation) (string, int, int, error)) (Reservation, error) {
	var out Reservation
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		r, err := db.GetReservation(tx, orderID)
		if err != nil {
			return err
		}
		to, onHand, reserved, err := step(r)
		if err != nil || to == "" {
			out = r
			return err
		}
		now := s.now()
		evs := make([]event.Event, 0, len(r.Lines))
		for _, l := range r.Lines {
			it, err := db.Adjust(tx, l.SKU, onHand*l.Quantity, reserved*l.Quantity, now)
			if err != nil {
				return err
			}
			if it.OnHand > contract.MaxStock {
				return fault.Wrapf(domain.ErrStockLimit, "%s would have %d on hand", l.SKU, it.OnHand)
			}
			ev, err := stockChanged(it)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		if err := db.SetReservationState(tx, orderID, r.State, to, now); err != nil {
			return err
		}
		r.State, r.UpdatedAt = to, now
		out = r
		return outbox.Add(ctx, tx, evs...)
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("%s reservation of order %s: %w", verb, orderID, err)
	}
	return out, nil
}

// Reservation returns an order's reservation.
func (s *Service) Reservation(ctx context.Context, orderID string) (Reservation, error) {
	return db.GetReservation(store.Conn(ctx, s.db), orderID)
}

// stockChanged is the event of a stock change: it carries the item's absolute stock after
// the change, as Adjust returns it.
func stockChanged(it Item) (event.Event, error) {
	return event.New(Source, contract.TypeStockChanged, it.SKU, contract.StockChanged{
		SKU: it.SKU, OnHand: it.OnHand, Reserved: it.Reserved, Version: it.Version, Name: it.Name, PriceCents: it.PriceCents})
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
