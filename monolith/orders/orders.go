// Package orders is the monolith's orders module. The module reaches the other capabilities
// only through the ports it declares here (Customers, Stock, Payments); each has an
// in-process adapter and, once a capability is extracted, a remote one.
//
// With every port in process, placing an order validates the customer, reserves stock,
// charges the payment and records the order in one local ACID transaction: any failure
// leaves no trace. Once a port is remote that is no longer possible — no network call is
// made while a write transaction is held — and orders are placed by a saga instead
// (Options.Saga; docs/saga.md): reserve → charge → confirm, each step's outcome recorded in
// the orders tables before the next runs, compensated in reverse (refund, release) when a
// step is refused or the saga times out, and resumed after a crash.
package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/db"
	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/monolith/orders/internal/httpapi"
	"github.com/ficus-project/ficus/monolith/orders/internal/saga"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Module is the module's name; its tables start with it.
const Module = "orders"

// Source is the module's event source.
const Source = "/monolith/orders"

// Types of the module's public API.
type (
	Order       = domain.Order
	Line        = domain.Line
	PlaceOrder  = domain.PlaceOrder
	RequestLine = domain.RequestLine
	// Key is an order's place in its customer's list (ByCustomer).
	Key = domain.Key
	// Saga is an order's saga (remote mode).
	Saga = domain.Saga
	// SagaStep is one step of a saga.
	SagaStep = domain.SagaStep
)

// Order states.
const (
	Pending   = domain.Pending
	Placed    = domain.Placed
	Cancelled = domain.Cancelled
)

// Saga states.
const (
	SagaRunning      = domain.SagaRunning
	SagaCompensating = domain.SagaCompensating
	SagaStuck        = domain.SagaStuck
	SagaPlaced       = domain.SagaPlaced
	SagaCancelled    = domain.SagaCancelled
)

// SagaStates lists every saga state.
var SagaStates = domain.SagaStates

// Saga steps: three forward steps and the compensations that undo them.
const (
	StepReserve = domain.StepReserve
	StepCharge  = domain.StepCharge
	StepConfirm = domain.StepConfirm
	StepRefund  = domain.StepRefund
	StepRelease = domain.StepRelease
	StepReturn  = domain.StepReturn
)

// StepFailed is the status of a step refused for good, or of a compensation that gave up.
const StepFailed = domain.StepFailed

// Sentinel errors.
var (
	// ErrNotFound is an unknown order.
	ErrNotFound = domain.ErrNotFound
	// ErrTotalLimit is an order whose total would exceed contract.MaxCents.
	ErrTotalLimit = domain.ErrTotalLimit
	// ErrOutcomeUnknown marks a port call that may have been applied without its answer
	// arriving; remote adapters wrap it (see domain.ErrOutcomeUnknown).
	ErrOutcomeUnknown = domain.ErrOutcomeUnknown
	// ErrPending refuses to cancel an order its saga is still placing.
	ErrPending = fault.New(fault.Conflict, "order_pending", "the order is still being placed; cancel it once it is placed")
	// ErrSagaNotFound is an unknown saga.
	ErrSagaNotFound = fault.New(fault.NotFound, "saga_not_found", "no saga for this order")
	// ErrNotStuck refuses to resume a saga that is not stuck.
	ErrNotStuck = fault.New(fault.Conflict, "saga_not_stuck", "only a stuck saga can be resumed")
)

// Customers checks that a customer exists (its error for an unknown one maps to 404).
type Customers interface {
	Exists(ctx context.Context, customerID string) error
}

// Stock holds, sells and gives back stock for an order. Every command is safe to repeat for
// the same order: the saga repeats a command whose answer it did not get.
type Stock interface {
	// Reserve holds the lines' stock and returns them priced. Reserving again with the same
	// lines returns the existing reservation.
	Reserve(ctx context.Context, orderID string, lines []RequestLine) ([]Line, error)
	// Commit sells the held stock.
	Commit(ctx context.Context, orderID string) error
	// Release ends a hold on stock never sold; a sold reservation is refused with the code
	// reservation_committed.
	Release(ctx context.Context, orderID string) error
	// Return puts sold stock back on hand: the order was cancelled after the sale.
	Return(ctx context.Context, orderID string) error
	// Reservation returns the order's reservation as the contract shows it.
	Reservation(ctx context.Context, orderID string) (contract.Reservation, error)
}

// Payments charges and refunds.
type Payments interface {
	// Charge captures amount from the customer, referencing the order, and returns the
	// payment id. Charging again for the same order charges nothing more and returns what
	// the first charge came to.
	Charge(ctx context.Context, customerID string, amountCents int64, orderID string) (string, error)
	// Refund refunds the order's payment in full; refunding a refunded payment is a no-op.
	Refund(ctx context.Context, orderID, paymentID string) error
	// Payment returns the payment as the contract shows it.
	Payment(ctx context.Context, paymentID string) (contract.Payment, error)
}

// Options tune New. The zero value places orders in one local transaction; each field's
// comment gives its default.
type Options struct {
	// BySaga places and cancels orders through the saga: set it when the ports are not all
	// in process (monolith.modules has a remote capability). Default false: one transaction.
	// Sagas left by an earlier run are resumed (Run) either way.
	BySaga bool
	// Saga tunes the sagas.
	Saga SagaOptions
	// StockInProcess and PaymentsInProcess say that the adapter calls a module of the
	// monolith in process (default false: remote): a saga then runs its calls in the
	// transaction that records their outcome, exactly once.
	StockInProcess, PaymentsInProcess bool
	// ReplyWithin is how long placing (or cancelling) an order through a saga waits for
	// it to end before it answers with the order still pending. Default 2s.
	ReplyWithin time.Duration
	// DetailsTimeout bounds the wait for each part of Details. Default 2s.
	DetailsTimeout time.Duration
	// Logger receives the sagas' compensations, stuck sagas and errors. Default: discarded.
	Logger *slog.Logger
	// Now is the clock of sagas. Default time.Now.
	Now func() time.Time
	// After is the timer sagas wait on. Default time.After.
	After func(d time.Duration) <-chan time.Time
	// OnSagaSave, if set, is called after each change of a saga's state, from and to.
	OnSagaSave func(from, to string)
	// Context is the parent of the sagas' work: cancelling it stops them at once, as a
	// crash would (Close also waits for them). Default context.Background().
	Context context.Context
}

// SagaOptions tune the order saga. Every field works at its zero value.
type SagaOptions struct {
	// Timeout is how long a saga may take to place its order; past it the order is
	// cancelled and what was done compensated. Default 30s.
	Timeout time.Duration
	// Backoff and MaxBackoff shape the waits between attempts of a step (exponential, full
	// jitter). Defaults 50ms and 5s.
	Backoff, MaxBackoff time.Duration
	// CompensationAttempts bounds the attempts of one compensation; past it the saga is
	// parked as stuck until resumed. Default 20.
	CompensationAttempts int
	// Settle is how long a release that finds no reservation, after a reserve request that
	// got no answer, waits for that request to arrive late. Default 5s.
	Settle time.Duration
	// Lease is how long a process keeps a saga to itself after its last save; a saga left
	// by a crashed process resumes elsewhere (or after a restart) once it has run out.
	// Default 10s.
	Lease time.Duration
	// Poll is how often the saga scheduler looks for sagas due. Default 500ms.
	Poll time.Duration
	// Concurrency bounds the sagas a process drives at once. Default 256.
	Concurrency int
}

// Service is the orders module.
type Service struct {
	db        *gorm.DB
	customers Customers
	stock     Stock
	payments  Payments
	opts      Options
	sagas     *saga.Runner
	// newID makes order ids; tests replace it to see a failure handled.
	newID func() (uuid.UUID, error)

	closeOnce sync.Once
}

// New returns the module on its own handle of db, with its ports.
func New(gdb *gorm.DB, customers Customers, stock Stock, payments Payments, opts Options) *Service {
	if opts.ReplyWithin <= 0 {
		opts.ReplyWithin = 2 * time.Second
	}
	if opts.DetailsTimeout <= 0 {
		opts.DetailsTimeout = 2 * time.Second
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{db: store.Handle(gdb, Module), customers: customers, stock: stock, payments: payments, opts: opts, newID: uuid.NewV7}
	so := opts.Saga
	s.sagas = saga.New(s.db, saga.Ports{Stock: stock, Payments: payments,
		StockInProcess: opts.StockInProcess, PaymentsInProcess: opts.PaymentsInProcess},
		saga.Hooks{Placed: s.recordPlaced, Cancelled: s.recordCancelled},
		saga.Options{
			Policy: domain.Policy{Backoff: so.Backoff, MaxBackoff: so.MaxBackoff, CompensationAttempts: so.CompensationAttempts},
			Settle: so.Settle, Lease: so.Lease, Poll: so.Poll, Concurrency: so.Concurrency,
			Now: opts.Now, After: opts.After, Logger: opts.Logger, OnSave: opts.OnSagaSave, Context: opts.Context,
		})
	return s
}

// Migrate applies the module's schema migrations.
func Migrate(ctx context.Context, gdb *gorm.DB) error { return db.Migrate(ctx, gdb) }

// RegisterRoutes adds the module's HTTP routes to g; idempotent guards the unsafe POST.
func (s *Service) RegisterRoutes(g *echo.Group, idempotent echo.MiddlewareFunc) {
	httpapi.Register(g, handlers{s}, idempotent)
}

// handlers is the module as its HTTP handlers see it: details in their wire form.
type handlers struct{ *Service }

func (h handlers) Details(ctx context.Context, id string) (contract.OrderDetails, error) {
	d, err := h.Service.Details(ctx, id)
	return d.Wire(), err
}

// SagaMode reports whether orders are placed through the saga.
func (s *Service) SagaMode() bool { return s.opts.BySaga }

// Run drives the sagas whose next attempt is due, those a crash left unfinished included,
// until ctx ends or the module is closed. It returns nil then.
func (s *Service) Run(ctx context.Context) error { return s.sagas.Run(ctx) }

// Close stops the sagas being driven (they resume when the module next runs) and waits for
// them to stop.
func (s *Service) Close() { s.closeOnce.Do(s.sagas.Close) }

// Place places an order: in one transaction across the modules, or (saga mode) through the
// saga. Its total is checked arithmetic: past contract.MaxCents it is ErrTotalLimit, and the
// order is not placed. An order whose total is 0 charges nothing and has no payment.
//
// Through the saga, Place waits up to Options.ReplyWithin for the saga to end: it returns
// the placed order, or the error that cancelled it; or, when the saga is still at work,
// the order with status Pending (InProgress reports it). A request that carries an
// Idempotency-Key (idempotency.Request in ctx) runs one saga however often it is repeated.
func (s *Service) Place(ctx context.Context, p PlaceOrder) (Order, error) {
	if err := p.Validate(); err != nil {
		return Order{}, err
	}
	if s.opts.BySaga {
		return s.placeBySaga(ctx, p)
	}
	id, err := s.newID()
	if err != nil {
		return Order{}, fmt.Errorf("placing order: making an id: %w", err)
	}
	o := Order{ID: id.String(), CustomerID: p.CustomerID, Status: Placed,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	// One unit of work across modules: ctx carries it to the ports, whose modules join it.
	// On PostgreSQL it may run again after a serialization failure, so it sets every field
	// of o it uses rather than adding to one.
	err = store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		if err := s.customers.Exists(ctx, p.CustomerID); err != nil {
			return err
		}
		lines, err := s.stock.Reserve(ctx, o.ID, p.Lines)
		if err != nil {
			return err
		}
		o.Lines = lines
		if o.TotalCents, err = domain.Total(lines); err != nil {
			return err
		}
		if o.TotalCents > 0 {
			if o.PaymentID, err = s.payments.Charge(ctx, p.CustomerID, o.TotalCents, o.ID); err != nil {
				return err
			}
		}
		if err := s.stock.Commit(ctx, o.ID); err != nil {
			return err
		}
		return s.insertPlaced(ctx, tx, o)
	})
	if err != nil {
		return Order{}, fmt.Errorf("placing order: %w", err)
	}
	return o, nil
}

// insertPlaced records a placed order and its order_placed event.
func (s *Service) insertPlaced(ctx context.Context, tx *gorm.DB, o Order) error {
	if err := db.Insert(tx, o); err != nil {
		return err
	}
	data := contract.OrderPlaced{OrderID: o.ID, CustomerID: o.CustomerID, TotalCents: o.TotalCents, PaymentID: o.PaymentID}
	for _, l := range o.Lines {
		data.Lines = append(data.Lines, contract.OrderLine{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents})
	}
	return outbox.Record(ctx, tx, Source, contract.TypeOrderPlaced, o.ID, data)
}

// recordPlaced is the saga's end when it placed its order: the order is recorded, in the
// transaction that marks the saga placed.
func (s *Service) recordPlaced(ctx context.Context, tx *gorm.DB, sg domain.Saga) error {
	return s.insertPlaced(ctx, tx, Order{ID: sg.ID, CustomerID: sg.CustomerID, Status: Placed, TotalCents: sg.TotalCents,
		PaymentID: sg.PaymentID, Lines: sg.Lines, CreatedAt: sg.CreatedAt.Truncate(time.Millisecond)})
}

// recordCancelled is a cancel saga's end: the order is marked cancelled, in the transaction
// that marks the saga cancelled.
func (s *Service) recordCancelled(ctx context.Context, tx *gorm.DB, sg domain.Saga) error {
	now := sg.UpdatedAt.Truncate(time.Millisecond)
	if sg.FinishedAt != nil {
		now = sg.FinishedAt.Truncate(time.Millisecond)
	}
	if _, err := db.MarkCancelled(tx, sg.ID, now); err != nil {
		return err
	}
	return outbox.Record(ctx, tx, Source, contract.TypeOrderCancelled, sg.ID, contract.OrderCancelled{
		OrderID: sg.ID, CustomerID: sg.CustomerID, Reason: "cancelled by request"})
}

// placeBySaga starts the order's saga — or finds the one this request started before, when
// it is run again after a crash — and waits for it a while.
func (s *Service) placeBySaga(ctx context.Context, p PlaceOrder) (Order, error) {
	// Customers stay in the monolith: an unknown one is refused before anything starts.
	if err := s.customers.Exists(ctx, p.CustomerID); err != nil {
		return Order{}, fmt.Errorf("placing order: %w", err)
	}
	key := ""
	if r, ok := idempotency.RequestOf(ctx); ok {
		key = r.ID()
	}
	id, err := s.newID()
	if err != nil {
		return Order{}, fmt.Errorf("placing order: making an id: %w", err)
	}
	now := s.sagas.Now()
	var sg domain.Saga
	started := false
	err = store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		sg = domain.NewPlaceSaga(id.String(), key, p, now, s.sagaTimeout())
		sg.Owner, sg.LeaseUntil = s.sagas.Owner(), now.Add(s.sagas.Lease())
		// Insert first: a request's first run finds no saga of its key, and needs no look.
		inserted, err := db.InsertSagaOnce(tx, sg)
		if started = inserted; err != nil || inserted {
			return err
		}
		old, _, err := db.SagaByKey(tx, key)
		if err != nil {
			return err
		}
		if !(old.State == SagaCancelled && old.Reason != nil && old.Reason.Kind == fault.Unavailable) {
			sg = old // this request's saga, from a run a crash interrupted
			return nil
		}
		// It ended in a 5xx, which leaves the key free: the client tries again.
		if err := db.ForgetRequestKey(tx, old.ID); err != nil {
			return err
		}
		started = true
		return db.InsertSaga(tx, sg)
	})
	if err != nil {
		return Order{}, fmt.Errorf("placing order: %w", err)
	}
	if started {
		sg, err = s.sagas.KickAndAwait(ctx, sg, s.opts.ReplyWithin)
	} else {
		sg, err = s.sagas.Await(ctx, sg.ID, s.opts.ReplyWithin)
	}
	if err != nil {
		return Order{}, fmt.Errorf("placing order: %w", err)
	}
	return placed(sg)
}

func (s *Service) sagaTimeout() time.Duration {
	if s.opts.Saga.Timeout > 0 {
		return s.opts.Saga.Timeout
	}
	return 30 * time.Second
}

// placed says what became of a place saga's order, as its client learns it: the order
// placed, the error that cancelled it, or — still at work — the order pending.
func placed(sg domain.Saga) (Order, error) {
	switch {
	case sg.State == SagaPlaced:
		// What recordPlaced recorded, without reading it back.
		return Order{ID: sg.ID, CustomerID: sg.CustomerID, Status: Placed, TotalCents: sg.TotalCents, PaymentID: sg.PaymentID,
			Lines: sg.Lines, CreatedAt: sg.CreatedAt.Truncate(time.Millisecond), Saga: &sg}, nil
	case sg.State == SagaCancelled && sg.Reason != nil:
		return Order{}, fmt.Errorf("placing order: %w", sg.Reason.Err())
	}
	return sg.View(), nil
}

// Order returns one order, with its saga when it has one: a placed order, or (saga mode)
// one still being placed (status pending) or whose placing failed (cancelled).
func (s *Service) Order(ctx context.Context, id string) (Order, error) {
	conn := store.Conn(ctx, s.db)
	o, err := db.Get(conn, id)
	sg, serr := db.GetSaga(conn, id)
	switch {
	case err == nil && serr == nil:
		o.Saga = &sg
		return o, nil
	case err == nil && errors.Is(serr, ErrNotFound):
		return o, nil
	case errors.Is(err, ErrNotFound) && serr == nil:
		return sg.View(), nil
	case err != nil:
		return Order{}, err
	}
	return Order{}, serr
}

// ByCustomer returns up to limit of a customer's orders, newest first (by created_at, then
// id), after the order at key after (nil for the first page). Only recorded orders are
// listed — placed, and perhaps cancelled since — not those a saga is still placing or
// failed to place (Order finds them).
func (s *Service) ByCustomer(ctx context.Context, customerID string, after *Key, limit int) ([]Order, error) {
	return db.ListByCustomer(store.Conn(ctx, s.db), customerID, after, limit)
}

// Cancel cancels a placed order: its sold stock is returned to on-hand and its payment
// refunded — in one transaction, or (saga mode) by a cancel saga, which Cancel waits for up
// to Options.ReplyWithin (the order returned is then still placed, its saga InProgress).
// Cancelling a cancelled order is a no-op; cancelling an order still being placed is
// ErrPending.
func (s *Service) Cancel(ctx context.Context, id string) (Order, error) {
	if s.opts.BySaga {
		return s.cancelBySaga(ctx, id)
	}
	var out Order
	// One unit of work across modules: ctx carries it to the ports, whose modules join it.
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		o, err := db.Get(tx, id)
		if errors.Is(err, ErrNotFound) {
			// Perhaps placed (or tried) by a saga before the modules went local again.
			if sg, serr := db.GetSaga(tx, id); serr == nil {
				if sg.State != SagaCancelled {
					return ErrPending
				}
				out = sg.View()
				return nil
			}
		}
		if err != nil {
			return err
		}
		if o.Status == Cancelled {
			out = o
			return nil
		}
		if err := s.stock.Return(ctx, id); err != nil {
			return err
		}
		if o.PaymentID != "" {
			if err := s.payments.Refund(ctx, id, o.PaymentID); err != nil {
				return err
			}
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		if _, err := db.MarkCancelled(tx, id, now); err != nil {
			return err
		}
		o.Status, o.CancelledAt = Cancelled, &now
		out = o
		return outbox.Record(ctx, tx, Source, contract.TypeOrderCancelled, o.ID, contract.OrderCancelled{
			OrderID: o.ID, CustomerID: o.CustomerID, Reason: "cancelled by request"})
	})
	if err != nil {
		return Order{}, fmt.Errorf("cancelling order %s: %w", id, err)
	}
	return out, nil
}

// cancelBySaga starts the order's cancellation (refund, return) as a saga and waits for it
// a while.
func (s *Service) cancelBySaga(ctx context.Context, id string) (Order, error) {
	now := s.sagas.Now()
	started, done := false, false
	var out Order
	err := store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
		started, done = false, false
		o, err := db.Get(tx, id)
		sg, serr := db.GetSaga(tx, id)
		if serr != nil && !errors.Is(serr, ErrNotFound) {
			return serr
		}
		hasSaga := serr == nil
		switch {
		case errors.Is(err, ErrNotFound) && hasSaga:
			// Never placed: failed (a no-op) or still being placed.
			if sg.State != SagaCancelled {
				return ErrPending
			}
			out, done = sg.View(), true
			return nil
		case err != nil:
			return err
		case o.Status == Cancelled:
			out, done = o, true
			if hasSaga {
				out.Saga = &sg
			}
			return nil
		case !hasSaga:
			// Placed in one transaction, before the modules went remote.
			sg = domain.NewCancelSaga(o, now)
			sg.Owner, sg.LeaseUntil = s.sagas.Owner(), now.Add(s.sagas.Lease())
			started = true
			return db.InsertSaga(tx, sg)
		case sg.State == SagaPlaced:
			prev := sg.Version
			sg.CancelPlaced(now)
			sg.Version++
			sg.Owner, sg.LeaseUntil = s.sagas.Owner(), now.Add(s.sagas.Lease())
			started = true
			return db.SaveSaga(tx, sg, prev)
		}
		return nil // a cancellation already under way: wait for it too
	})
	if err != nil {
		return Order{}, fmt.Errorf("cancelling order %s: %w", id, err)
	}
	if done {
		return out, nil
	}
	if started {
		s.sagas.Kick(id)
	}
	if _, err := s.sagas.Await(ctx, id, s.opts.ReplyWithin); err != nil {
		return Order{}, fmt.Errorf("cancelling order %s: %w", id, err)
	}
	return s.Order(ctx, id)
}

// Saga returns an order's saga.
func (s *Service) Saga(ctx context.Context, id string) (Saga, error) {
	return GetSaga(ctx, s.db, id)
}

// Sagas returns up to limit sagas in state (any when empty), oldest first, after the saga
// afterID ("" for the first page).
func (s *Service) Sagas(ctx context.Context, state, afterID string, limit int) ([]Saga, error) {
	return ListSagas(ctx, s.db, state, afterID, limit)
}

// SagaCounts returns how many sagas are in each state.
func (s *Service) SagaCounts(ctx context.Context) (map[string]int64, error) {
	return CountSagas(ctx, s.db)
}

// ResumeSaga takes a stuck saga up again (see the function ResumeSaga), and wakes this
// module's runner for it.
func (s *Service) ResumeSaga(ctx context.Context, id string) (Saga, error) {
	sg, err := ResumeSaga(ctx, s.db, id, s.sagas.Now())
	if err != nil {
		return Saga{}, err
	}
	s.sagas.Wake(id)
	return sg, nil
}

// The functions below work on the monolith's database directly, with no module running:
// for tools (ficus sagas) as much as for the module itself.

// GetSaga returns an order's saga; ErrSagaNotFound when it has none.
func GetSaga(ctx context.Context, gdb *gorm.DB, id string) (Saga, error) {
	sg, err := db.GetSaga(store.Conn(ctx, store.Handle(gdb, Module)), id)
	if errors.Is(err, ErrNotFound) {
		return Saga{}, ErrSagaNotFound
	}
	return sg, err
}

// ListSagas returns up to limit sagas in state (any when empty), oldest first (by id), after
// the saga afterID ("" for the first page).
func ListSagas(ctx context.Context, gdb *gorm.DB, state, afterID string, limit int) ([]Saga, error) {
	return db.ListSagas(store.Conn(ctx, store.Handle(gdb, Module)), state, afterID, limit)
}

// CountSagas returns how many sagas are in each state.
func CountSagas(ctx context.Context, gdb *gorm.DB) (map[string]int64, error) {
	return db.CountSagas(store.Conn(ctx, store.Handle(gdb, Module)))
}

// ResumeSaga takes a stuck saga up again at now: its failed compensation gets a fresh set of
// attempts, at once, and any process's runner may take it (the monolith's scheduler finds
// it within its poll, or on its next start). A saga that is not stuck is ErrNotStuck.
func ResumeSaga(ctx context.Context, gdb *gorm.DB, id string, now time.Time) (Saga, error) {
	h := store.Handle(gdb, Module)
	var out Saga
	for range 5 {
		err := store.Write(ctx, h, func(ctx context.Context, tx *gorm.DB) error {
			sg, err := db.GetSaga(tx, id)
			if errors.Is(err, ErrNotFound) {
				return ErrSagaNotFound
			}
			if err != nil {
				return err
			}
			prev := sg.Version
			if !sg.Resume(now.UTC()) {
				return fault.Wrapf(ErrNotStuck, "saga %s is %s", id, sg.State)
			}
			// Free for whichever runner looks first.
			sg.Version++
			sg.Owner, sg.LeaseUntil = "", time.Time{}
			out = sg
			return db.SaveSaga(tx, sg, prev)
		})
		if errors.Is(err, db.ErrVersion) {
			continue
		}
		if err != nil {
			return Saga{}, fmt.Errorf("resuming saga %s: %w", id, err)
		}
		return out, nil
	}
	return Saga{}, fmt.Errorf("resuming saga %s: it kept changing under us; try again", id)
}
