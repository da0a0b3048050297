// Package saga drives the orders module's sagas (docs/saga.md): it runs each saga's steps
// against the module's ports, records every outcome in the orders database before the next
// step runs, and resumes what a crash interrupted.
//
// A saga is driven by one goroutine at a time in a process (Kick starts one; the scheduler,
// Run, starts one for each saga whose next attempt is due), and by one process at a time
// (a lease on the saga's row, renewed with every save). Every save checks the version the
// saga was loaded at, so a change made meanwhile by someone else — the payment event, an
// operator's resume, another process after the lease ran out — is never overwritten: the
// driver reads the saga again and goes on from there.
//
// Calls to a remote adapter are made outside any transaction, and are at least once: the
// adapter's idempotency keys make a repeat harmless. Calls to an in-process adapter (a module
// of the monolith itself) are made inside the transaction that records their outcome, so
// they happen exactly once.
package saga

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/db"
	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/store"
)

// Stock is what the saga needs of the inventory side.
type Stock interface {
	Reserve(ctx context.Context, orderID string, lines []domain.RequestLine) ([]domain.Line, error)
	Commit(ctx context.Context, orderID string) error
	Release(ctx context.Context, orderID string) error
	Return(ctx context.Context, orderID string) error
}

// Payments is what the saga needs of the payments side.
type Payments interface {
	Charge(ctx context.Context, customerID string, amountCents int64, orderID string) (string, error)
	Refund(ctx context.Context, orderID, paymentID string) error
}

// Ports are the sides a saga calls, and whether each runs in the monolith's own database.
type Ports struct {
	Stock    Stock
	Payments Payments
	// StockInProcess and PaymentsInProcess are set when the adapter calls a module of the
	// monolith in process: its calls then join the unit of work that records their outcome.
	StockInProcess, PaymentsInProcess bool
}

// Hooks are the module's own work at a saga's end, done in the transaction that records it.
type Hooks struct {
	// Placed records the order a place saga placed.
	Placed func(ctx context.Context, tx *gorm.DB, s domain.Saga) error
	// Cancelled marks the order a cancel saga cancelled.
	Cancelled func(ctx context.Context, tx *gorm.DB, s domain.Saga) error
}

// Options tune a Runner. Every field works at its zero value; each comment gives the default.
type Options struct {
	// Policy is the retry policy. Defaults: 50ms backoff, 5s max backoff, 20 compensation
	// attempts.
	Policy domain.Policy
	// Settle is how long after the last reserve attempt that got no answer a release that
	// finds no reservation waits before it concludes none will appear. Default 5s.
	Settle time.Duration
	// Lease is how long a process keeps a saga to itself after its last save. Default 10s.
	Lease time.Duration
	// Poll is how often the scheduler looks for sagas due. Default 500ms.
	Poll time.Duration
	// Concurrency bounds the sagas driven at once. Default 256.
	Concurrency int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// After is the timer the runner waits on. Default time.After.
	After func(d time.Duration) <-chan time.Time
	// Logger receives compensations, stuck sagas and errors. Default: discarded.
	Logger *slog.Logger
	// Owner names this process on the sagas it drives. Default: a random name.
	Owner string
	// OnSave, if set, is called after each saved change of a saga's state, from and to.
	OnSave func(from, to string)
	// Context is the parent of every driver's context: cancelling it stops the drivers,
	// as Close does, without waiting for them. Default context.Background().
	Context context.Context
}

// inlineWait is the longest a driver waits for a backoff itself; a longer wait is left to
// the scheduler, so a saga waiting for a service to come back holds no goroutine.
const inlineWait = 250 * time.Millisecond

// scanBatch is how many due sagas the scheduler takes at once.
const scanBatch = 100

// Runner drives sagas.
type Runner struct {
	db    *gorm.DB
	ports Ports
	hooks Hooks
	opts  Options
	log   *slog.Logger

	ctx    context.Context // cancelled by Close; every driver runs under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{}
	wakeup chan struct{} // wakes the scheduler

	mu      sync.Mutex
	active  map[string]chan struct{}      // sagas driven in this process → their wake channel
	waiters map[string][]chan domain.Saga // Await calls, by saga: told the saga when it ends
}

// New returns a runner of the sagas in db (the orders module's handle).
func New(gdb *gorm.DB, ports Ports, hooks Hooks, opts Options) *Runner {
	if opts.Policy.Backoff <= 0 {
		opts.Policy.Backoff = 50 * time.Millisecond
	}
	if opts.Policy.MaxBackoff <= 0 {
		opts.Policy.MaxBackoff = 5 * time.Second
	}
	if opts.Policy.CompensationAttempts <= 0 {
		opts.Policy.CompensationAttempts = 20
	}
	if opts.Settle <= 0 {
		opts.Settle = 5 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 10 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 256
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Owner == "" {
		opts.Owner = "orders-" + rand.Text()[:12]
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	ctx, cancel := context.WithCancel(opts.Context)
	return &Runner{db: gdb, ports: ports, hooks: hooks, opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, opts.Concurrency), wakeup: make(chan struct{}, 1),
		active: map[string]chan struct{}{}, waiters: map[string][]chan domain.Saga{}}
}

// Owner returns the name this runner drives sagas under.
func (r *Runner) Owner() string { return r.opts.Owner }

// Lease returns how long a save keeps a saga to this runner.
func (r *Runner) Lease() time.Duration { return r.opts.Lease }

// Now returns the runner's clock's time, in UTC.
func (r *Runner) Now() time.Time { return r.opts.Now().UTC() }

// Close stops every driver and waits for them. Sagas left unfinished resume when a runner
// next runs on the database.
func (r *Runner) Close() {
	r.cancel()
	r.wg.Wait()
}

// Kick starts driving saga id now, if a slot is free; otherwise the scheduler takes it.
func (r *Runner) Kick(id string) { r.kick(id, nil) }

// kick is Kick, with the saga as just saved when the caller has it.
func (r *Runner) kick(id string, known *domain.Saga) {
	select {
	case r.slots <- struct{}{}:
		if !r.launch(id, known) {
			<-r.slots
		}
	default:
		r.wakeScheduler()
	}
}

// Wake tells the runner saga id changed outside it (an event, a resume): its driver looks
// again at once, or the scheduler does.
func (r *Runner) Wake(id string) {
	r.mu.Lock()
	ch, ok := r.active[id]
	r.mu.Unlock()
	if ok {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	r.wakeScheduler()
}

func (r *Runner) wakeScheduler() {
	select {
	case r.wakeup <- struct{}{}:
	default:
	}
}

// launch starts a driver for id, holding a slot the caller took, unless one runs already.
func (r *Runner) launch(id string, known *domain.Saga) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.active[id]; ok || r.ctx.Err() != nil {
		return false
	}
	wake := make(chan struct{}, 1)
	r.active[id] = wake
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(r.active, id)
			r.mu.Unlock()
			<-r.slots
		}()
		r.drive(id, known, wake)
	})
	return true
}

// Run drives, until ctx ends or the runner is closed, every saga whose next attempt is due:
// on start, those a crash left unfinished (once their lease has run out); then those
// waiting for a backoff longer than a driver waits itself, or for a service to come back.
func (r *Runner) Run(ctx context.Context) error {
	for {
		ids, err := db.DueSagas(store.Conn(r.ctx, r.db), r.Now(), r.opts.Owner, scanBatch)
		if err != nil && r.ctx.Err() == nil && ctx.Err() == nil {
			r.log.Error("saga scheduler: finding sagas due", "err", err)
		}
		for _, id := range ids {
			r.mu.Lock()
			_, running := r.active[id]
			r.mu.Unlock()
			if running {
				continue
			}
			select {
			case r.slots <- struct{}{}:
				if !r.launch(id, nil) {
					<-r.slots
				}
			case <-ctx.Done():
				return nil
			case <-r.ctx.Done():
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.ctx.Done():
			return nil
		case <-r.wakeup:
		case <-r.opts.After(r.opts.Poll):
		}
	}
}

// Await waits up to d for saga id to reach an end (placed, cancelled) or to be stuck, and
// returns it as it then is.
func (r *Runner) Await(ctx context.Context, id string, d time.Duration) (domain.Saga, error) {
	ch, stop := r.watch(id)
	defer stop()
	s, err := db.GetSaga(store.Conn(ctx, r.db), id)
	if err != nil || s.Terminal() || s.State == domain.SagaStuck {
		return s, err
	}
	return r.await(ctx, id, ch, d)
}

// KickAndAwait starts driving s, a saga just recorded, and waits up to d for it as Await
// does; it need not read the saga first, since it watches before the saga can move.
func (r *Runner) KickAndAwait(ctx context.Context, s domain.Saga, d time.Duration) (domain.Saga, error) {
	ch, stop := r.watch(s.ID)
	defer stop()
	r.kick(s.ID, &s)
	return r.await(ctx, s.ID, ch, d)
}

// await waits for the saga's end on ch, for at most d; past d it reads the saga as it is.
func (r *Runner) await(ctx context.Context, id string, ch <-chan domain.Saga, d time.Duration) (domain.Saga, error) {
	select {
	case s := <-ch:
		return s, nil
	case <-r.opts.After(d):
	case <-ctx.Done():
	}
	return db.GetSaga(store.Conn(context.WithoutCancel(ctx), r.db), id)
}

// watch registers for the end of saga id; stop unregisters.
func (r *Runner) watch(id string) (<-chan domain.Saga, func()) {
	ch := make(chan domain.Saga, 1)
	r.mu.Lock()
	r.waiters[id] = append(r.waiters[id], ch)
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		ws := r.waiters[id]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(r.waiters, id)
		} else {
			r.waiters[id] = ws
		}
	}
}

// notify tells the Await calls of a saga that it ended (or is stuck).
func (r *Runner) notify(s domain.Saga) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.waiters[s.ID] {
		select {
		case w <- s:
		default:
		}
	}
}

// drive runs saga id until it ends, is stuck, waits longer than inlineWait, belongs to
// another process, or the runner closes. It reads the saga again only when it may have
// changed under it: at first, after a save that did not go through, and when woken.
func (r *Runner) drive(id string, known *domain.Saga, wake <-chan struct{}) {
	ctx := r.ctx
	var s domain.Saga
	stale := true
	if known != nil {
		s, stale = *known, false
	}
	for ctx.Err() == nil {
		if stale {
			var err error
			if s, err = db.GetSaga(store.Conn(ctx, r.db), id); err != nil {
				if ctx.Err() == nil && !errors.Is(err, domain.ErrNotFound) {
					r.log.Error("saga: loading", "saga", id, "err", err)
				}
				return
			}
		}
		stale = true
		if s.Terminal() || s.State == domain.SagaStuck {
			r.notify(s)
			return
		}
		now := r.Now()
		if s.Owner != r.opts.Owner && s.LeaseUntil.After(now) {
			return // another process drives it
		}
		if s.Owner != r.opts.Owner || s.LeaseUntil.Sub(now) < r.opts.Lease/2 {
			// Take the saga (a crashed process's, once its lease ran out) or renew the lease
			// before a call that may take a while.
			s, stale = r.save(ctx, s, func(s *domain.Saga) {
				if s.Owner != r.opts.Owner {
					s.TakeOver(now)
				}
			})
			continue
		}
		if s.State == domain.SagaRunning && !now.Before(s.Deadline) {
			cause := ""
			if st := s.Current(); st != nil && st.Error != "" {
				cause = st.Name + ": " + st.Error
			}
			s, stale = r.save(ctx, s, func(s *domain.Saga) { s.Timeout(now, cause) })
			continue
		}
		if wait := s.NextAt.Sub(now); wait > 0 {
			if wait > inlineWait {
				return // the scheduler takes it up when it is due
			}
			select {
			case <-ctx.Done():
				return
			case <-wake: // changed outside: read it again
			case <-r.opts.After(wait):
				stale = false
			}
			continue
		}
		s, stale = r.step(ctx, s)
	}
}

// save applies change to s and stores it over the version s was loaded at, with this
// runner's lease. It returns the saga as saved, or stale when it did not save: a conflict
// (someone else moved the saga on) is not an error, the caller reads the saga again.
func (r *Runner) save(ctx context.Context, s domain.Saga, change func(*domain.Saga)) (domain.Saga, bool) {
	from := s.State
	var saved domain.Saga
	err := store.Write(ctx, r.db, func(ctx context.Context, tx *gorm.DB) error {
		saved = r.next(s, change)
		return r.persist(ctx, tx, from, saved, s.Version)
	})
	if !r.after(s, saved, err) {
		return s, true
	}
	return saved, false
}

// next returns a copy of s changed by change, ready to be saved by this runner.
func (r *Runner) next(s domain.Saga, change func(*domain.Saga)) domain.Saga {
	s.Steps = append([]domain.SagaStep(nil), s.Steps...)
	change(&s)
	now := r.Now()
	s.Version++
	s.Owner, s.LeaseUntil, s.UpdatedAt = r.opts.Owner, now.Add(r.opts.Lease), now
	if s.State == domain.SagaRunning && s.NextAt.After(s.Deadline) {
		s.NextAt = s.Deadline // the timeout is due before the next attempt
	}
	return s
}

// persist saves s over prev in tx, with the module's own work when the saga ends.
func (r *Runner) persist(ctx context.Context, tx *gorm.DB, from string, s domain.Saga, prev int64) error {
	if err := db.SaveSaga(tx, s, prev); err != nil {
		return err
	}
	switch {
	case s.State == domain.SagaPlaced && from != domain.SagaPlaced && r.hooks.Placed != nil:
		return r.hooks.Placed(ctx, tx, s)
	case s.State == domain.SagaCancelled && s.Kind == domain.SagaCancel && r.hooks.Cancelled != nil:
		return r.hooks.Cancelled(ctx, tx, s)
	}
	return nil
}

// after reports on a save of s as saved, and logs what deserves it.
func (r *Runner) after(s, saved domain.Saga, err error) bool {
	switch {
	case errors.Is(err, db.ErrVersion):
		return false
	case err != nil:
		if r.ctx.Err() == nil {
			r.log.Error("saga: saving", "saga", s.ID, "err", err)
			// Not at once again: the database may be the trouble.
			select {
			case <-r.ctx.Done():
			case <-r.opts.After(r.opts.Policy.Backoff):
			}
		}
		return false
	}
	if s.State != saved.State {
		if r.opts.OnSave != nil {
			r.opts.OnSave(s.State, saved.State)
		}
		switch saved.State {
		case domain.SagaCompensating:
			// A refusal (a declined card, no stock) is business as usual; running out of time
			// means a service is down or slow.
			lvl, reason := slog.LevelInfo, ""
			if saved.Reason != nil {
				reason = saved.Reason.Code + ": " + saved.Reason.Msg
				if saved.Reason.Code == domain.CodeSagaTimeout {
					lvl = slog.LevelWarn
				}
			}
			r.log.Log(context.Background(), lvl, "saga compensating", "saga", saved.ID, "kind", saved.Kind, "reason", reason)
		case domain.SagaStuck:
			st := saved.Steps
			last := ""
			for i := len(st) - 1; i >= 0; i-- {
				if st[i].Status == domain.StepFailed {
					last = st[i].Name + ": " + st[i].Error
					break
				}
			}
			r.log.Error("saga stuck: a compensation keeps failing; resume it with ficus sagas resume", "saga", saved.ID, "last_error", last)
		}
	}
	if saved.Terminal() || saved.State == domain.SagaStuck {
		r.notify(saved)
	}
	return true
}

// step makes one attempt at s's current step and records its outcome. It returns the saga
// as saved, or stale when the outcome was not recorded.
func (r *Runner) step(ctx context.Context, s domain.Saga) (domain.Saga, bool) {
	st := s.Current()
	if st == nil {
		return s, true
	}
	if r.inProcess(st.Name) {
		// The call joins the transaction that records its outcome: exactly once.
		from := s.State
		var saved domain.Saga
		err := store.Write(ctx, r.db, func(ctx context.Context, tx *gorm.DB) error {
			if err := tx.SavePoint("ficus_saga_step").Error; err != nil {
				return err
			}
			o := r.attempt(ctx, s, st.Name, true)
			if o.Err != nil {
				if err := tx.RollbackTo("ficus_saga_step").Error; err != nil {
					return err
				}
			}
			saved = r.next(s, func(s *domain.Saga) { _ = s.Apply(o, r.Now(), r.opts.Policy) })
			return r.persist(ctx, tx, from, saved, s.Version)
		})
		if !r.after(s, saved, err) {
			return s, true
		}
		return saved, false
	}
	o := r.attempt(ctx, s, st.Name, false)
	if ctx.Err() != nil {
		return s, true // closing: the outcome is lost, as in a crash, and the step is tried again
	}
	// A successful charge goes straight on to the confirm step's commit, and both outcomes are
	// recorded in one save. That is safe because the confirm step records no compensation of
	// its own (the release recorded before the reservation undoes a commit too, by a return):
	// after a crash in between, the charge is asked again with its key and answers the same
	// payment. The reservation cannot be chained that way to the charge: the refund must be
	// recorded before the charge is made.
	var then *domain.Outcome
	if st.Name == domain.StepCharge && o.Err == nil && !r.inProcess(domain.StepConfirm) {
		next := s
		next.Steps = append([]domain.SagaStep(nil), s.Steps...)
		_ = next.Apply(o, r.Now(), r.opts.Policy)
		if c := next.Current(); c != nil && c.Name == domain.StepConfirm && next.State == domain.SagaRunning {
			oc := r.attempt(ctx, next, domain.StepConfirm, false)
			if ctx.Err() != nil {
				return s, true
			}
			then = &oc
		}
	}
	return r.save(ctx, s, func(s *domain.Saga) {
		_ = s.Apply(o, r.Now(), r.opts.Policy)
		if then != nil {
			_ = s.Apply(*then, r.Now(), r.opts.Policy)
		}
	})
}

// inProcess reports whether step calls an in-process adapter.
func (r *Runner) inProcess(step string) bool {
	switch step {
	case domain.StepReserve, domain.StepConfirm, domain.StepRelease, domain.StepReturn:
		return r.ports.StockInProcess
	}
	return r.ports.PaymentsInProcess
}

// Codes of the inventory contract a release reads.
const (
	codeReservationCommitted = "reservation_committed"
	codeReservationNotFound  = "reservation_not_found"
	codeReservationState     = "reservation_state"
)

// attempt makes one attempt at step and returns its outcome.
func (r *Runner) attempt(ctx context.Context, s domain.Saga, step string, inProcess bool) domain.Outcome {
	switch step {
	case domain.StepReserve:
		lines, err := r.ports.Stock.Reserve(ctx, s.ID, s.Request)
		return domain.Outcome{Lines: lines, Err: err}
	case domain.StepCharge:
		id, err := r.ports.Payments.Charge(ctx, s.CustomerID, s.TotalCents, s.ID)
		return domain.Outcome{PaymentID: id, Err: err}
	case domain.StepConfirm:
		return domain.Outcome{Err: r.ports.Stock.Commit(ctx, s.ID)}
	case domain.StepReturn:
		return domain.Outcome{Err: r.ports.Stock.Return(ctx, s.ID)}
	case domain.StepRelease:
		err := r.ports.Stock.Release(ctx, s.ID)
		if hasCode(err, codeReservationCommitted) {
			// Sold meanwhile (the confirm step's commit went through): undo the sale.
			err = r.ports.Stock.Return(ctx, s.ID)
		}
		if hasCode(err, codeReservationState) {
			// Neither held, released nor committed: returned, by an earlier attempt whose
			// answer was lost. The stock is back.
			err = nil
		}
		if hasCode(err, codeReservationNotFound) {
			reserve := s.Step(domain.StepReserve)
			if reserve == nil || reserve.Status != domain.StepDone {
				// The reservation was never answered. A request still on its way could make
				// it, for a while; after that, nothing is held.
				if inProcess || reserve == nil || reserve.LastAt == nil || !r.Now().Before(reserve.LastAt.Add(r.opts.Settle)) {
					return domain.Outcome{Settled: true}
				}
				until := reserve.LastAt.Add(r.opts.Settle)
				return domain.Outcome{WaitUntil: until, Err: fmt.Errorf("no reservation yet; a reservation request may still arrive until %s: %w",
					until.Format(time.RFC3339Nano), err)}
			}
		}
		return domain.Outcome{Err: err}
	case domain.StepRefund:
		paymentID := s.PaymentID
		if paymentID == "" {
			if inProcess {
				// In process the charge committed with its record: no id, no charge.
				return domain.Outcome{}
			}
			// The charge was never answered. Asking again with the same Idempotency-Key and
			// body makes the payments side answer what it did (or do it now, once): a
			// refusal means nothing was captured.
			id, err := r.ports.Payments.Charge(ctx, s.CustomerID, s.TotalCents, s.ID)
			if err != nil {
				if _, final := domain.Refusal(err); final {
					return domain.Outcome{}
				}
				return domain.Outcome{Err: fmt.Errorf("asking what became of the charge: %w", err)}
			}
			paymentID = id
		}
		return domain.Outcome{PaymentID: paymentID, Err: r.ports.Payments.Refund(ctx, s.ID, paymentID)}
	}
	return domain.Outcome{Err: fmt.Errorf("saga %s: unknown step %q", s.ID, step)}
}

func hasCode(err error, code string) bool {
	fe, ok := fault.As(err)
	return ok && fe.Code == code
}

// Change loads saga id in tx, lets change modify it (reporting whether it did) and saves it,
// trying again when the saga moved on meanwhile. It is for changes made outside a driver —
// the payment event, an operator's resume — in a transaction of the caller's; Wake the saga
// once it has committed.
func (r *Runner) Change(ctx context.Context, tx *gorm.DB, id string, change func(s *domain.Saga) bool) (domain.Saga, bool, error) {
	for range 5 {
		s, err := db.GetSaga(tx, id)
		if err != nil {
			return s, false, err
		}
		prev, from := s.Version, s.State
		s.Steps = append([]domain.SagaStep(nil), s.Steps...)
		if !change(&s) {
			return s, false, nil
		}
		s.Version++
		s.UpdatedAt = r.Now()
		err = db.SaveSaga(tx, s, prev)
		if errors.Is(err, db.ErrVersion) {
			continue
		}
		if err != nil {
			return s, false, err
		}
		if from != s.State && r.opts.OnSave != nil {
			r.opts.OnSave(from, s.State)
		}
		return s, true, nil
	}
	return domain.Saga{}, false, fmt.Errorf("changing saga %s: it kept changing under us", id)
}
