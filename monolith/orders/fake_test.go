package orders_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// The fake world is what the order saga talks to in remote mode: an inventory service and a
// payments service that keep their state across the monolith's crashes, and a network that
// fails as the test's fault script says. It follows the services' contract: reservations are
// keyed by order (a repeat with the same lines answers the existing one), charges by their
// Idempotency-Key (a repeat answers the stored outcome; a 5xx is not stored), and every
// other command is idempotent.

// faultKind is what happens to one call.
type faultKind int

const (
	fOK faultKind = iota
	// fDown: the connection is refused; nothing reaches the service.
	fDown
	// fBusy: the service answers 503 (its customer copy is behind): nothing done, retry.
	fBusy
	// fLostAnswer: the service does it, the answer is lost (a timeout).
	fLostAnswer
	// fLate: the call times out before it arrives; it arrives a little later and is done then.
	fLate
	// fCrashBefore: the monolith dies before the call leaves.
	fCrashBefore
	// fCrashAfter: the service does it, and the monolith dies before the answer arrives.
	fCrashAfter
	fKinds
)

func (k faultKind) String() string {
	return [...]string{"ok", "down", "busy", "lost-answer", "late", "crash-before", "crash-after"}[k]
}

var (
	errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	errBusy    = &fault.Error{Kind: fault.Unavailable, Code: "customer_not_yet_known", Msg: "the customer copy is behind"}
	errTimeout = fmt.Errorf("no response within 2s: %w", orders.ErrOutcomeUnknown)
	errDead    = errors.New("the process is dead")

	errNoStock   = &fault.Error{Kind: fault.Conflict, Code: "insufficient_stock", Msg: "insufficient stock"}
	errNoItem    = &fault.Error{Kind: fault.NotFound, Code: "item_not_found", Msg: "item not found"}
	errNoRes     = &fault.Error{Kind: fault.NotFound, Code: "reservation_not_found", Msg: "reservation not found"}
	errResState  = &fault.Error{Kind: fault.Conflict, Code: "reservation_state", Msg: "the reservation is not in a state that allows this"}
	errCommitted = &fault.Error{Kind: fault.Conflict, Code: "reservation_committed", Msg: "the reservation was committed"}
	errExists    = &fault.Error{Kind: fault.Conflict, Code: "reservation_exists", Msg: "a different reservation exists for this order"}
	errDeclined  = &fault.Error{Kind: fault.Declined, Code: "payment_declined", Msg: "payment declined: card declined"}
	errCredit    = &fault.Error{Kind: fault.Declined, Code: "payment_declined", Msg: "payment declined: credit limit exceeded"}
	errGateway   = &fault.Error{Kind: fault.Unavailable, Code: "gateway_unavailable", Msg: "the payment gateway is unavailable"}
	errNoPayment = &fault.Error{Kind: fault.NotFound, Code: "payment_not_found", Msg: "payment not found"}
)

type fakeItem struct {
	onHand, reserved int
	price            int64
}

type fakeReservation struct {
	state string
	lines []orders.Line
}

type fakePayment struct {
	id, customer, ref string
	amount            int64
	refunded          bool
}

// chargeOutcome is what a charge's key stores.
type chargeOutcome struct {
	paymentID string
	err       error
}

type fakeCustomer struct {
	credit  int64
	decline bool // the card is declined
	outage  bool // the gateway is down for this customer
}

// world is the services and the network.
type world struct {
	mu           sync.Mutex
	items        map[string]*fakeItem
	initial      map[string]int
	reservations map[string]*fakeReservation
	payments     map[string]*fakePayment
	keys         map[string]chargeOutcome
	customers    map[string]*fakeCustomer
	nextPayment  int

	script []faultKind
	next   int
	// faults counts the faults applied, by kind.
	faults [fKinds]int

	late sync.WaitGroup // late calls still on their way
	// alive is the generation of the live monolith process; calls from another are dropped.
	alive atomic.Int64
	// crashed receives the generation of a process the script killed.
	crashed chan int64
	// kill stops the process of a generation at once (it cancels its sagas' context).
	killMu sync.Mutex
	kill   map[int64]context.CancelFunc
}

func newWorld(script []faultKind) *world {
	return &world{items: map[string]*fakeItem{}, initial: map[string]int{}, reservations: map[string]*fakeReservation{},
		payments: map[string]*fakePayment{}, keys: map[string]chargeOutcome{}, customers: map[string]*fakeCustomer{},
		script: script, crashed: make(chan int64, 16), kill: map[int64]context.CancelFunc{}}
}

// nextFault takes the next fault of the script; past its end every call goes through.
func (w *world) nextFault() faultKind {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next >= len(w.script) {
		return fOK
	}
	k := w.script[w.next]
	w.next++
	w.faults[k]++
	return k
}

// heal drops what is left of the script: every call goes through from now on.
func (w *world) heal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = len(w.script)
}

// call runs apply (the service's work, under the world's lock) as the fault script says,
// for the process of generation gen.
func (w *world) call(gen int64, apply func() error) error {
	if w.alive.Load() != gen {
		return errDead
	}
	locked := func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		return apply()
	}
	switch w.nextFault() {
	case fDown:
		return errRefused
	case fBusy:
		return errBusy
	case fLostAnswer:
		_ = locked()
		return errTimeout
	case fLate:
		w.late.Add(1)
		go func() {
			defer w.late.Done()
			time.Sleep(20 * time.Millisecond) // on its way, within the saga's settle time
			_ = locked()
		}()
		return errTimeout
	case fCrashBefore:
		w.crash(gen)
		return errDead
	case fCrashAfter:
		_ = locked()
		w.crash(gen)
		return errDead
	}
	return locked()
}

func (w *world) crash(gen int64) {
	if !w.alive.CompareAndSwap(gen, 0) {
		return
	}
	w.killMu.Lock()
	if cancel, ok := w.kill[gen]; ok {
		cancel()
	}
	w.killMu.Unlock()
	w.crashed <- gen
}

// ports returns the ports of the process of generation gen.
func (w *world) ports(gen int64) (fakeStock, fakePayments) {
	return fakeStock{w: w, gen: gen}, fakePayments{w: w, gen: gen}
}

type fakeStock struct {
	w   *world
	gen int64
}

func (s fakeStock) Reserve(_ context.Context, orderID string, lines []orders.RequestLine) ([]orders.Line, error) {
	var out []orders.Line
	err := s.w.call(s.gen, func() error {
		w := s.w
		if r, ok := w.reservations[orderID]; ok {
			if len(r.lines) != len(lines) {
				return errExists
			}
			for i := range lines {
				if r.lines[i].SKU != lines[i].SKU || r.lines[i].Quantity != lines[i].Quantity {
					return errExists
				}
			}
			out = append([]orders.Line(nil), r.lines...)
			return nil
		}
		priced := make([]orders.Line, len(lines))
		for i, l := range lines {
			it, ok := w.items[l.SKU]
			if !ok {
				return errNoItem
			}
			if it.onHand-it.reserved < l.Quantity {
				return errNoStock
			}
			priced[i] = orders.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: it.price}
		}
		for _, l := range lines {
			w.items[l.SKU].reserved += l.Quantity
		}
		w.reservations[orderID] = &fakeReservation{state: "held", lines: priced}
		out = append([]orders.Line(nil), priced...)
		return nil
	})
	// A late answer (fLate) runs apply after this call has returned: read what it wrote
	// under the world's lock, as apply wrote it.
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return out, err
}

// transition moves a reservation as the inventory service does.
func (s fakeStock) transition(orderID string, step func(r *fakeReservation) error) error {
	return s.w.call(s.gen, func() error {
		r, ok := s.w.reservations[orderID]
		if !ok {
			return errNoRes
		}
		return step(r)
	})
}

func (s fakeStock) Commit(_ context.Context, orderID string) error {
	return s.transition(orderID, func(r *fakeReservation) error {
		switch r.state {
		case "committed":
			return nil
		case "held":
			for _, l := range r.lines {
				it := s.w.items[l.SKU]
				it.onHand -= l.Quantity
				it.reserved -= l.Quantity
			}
			r.state = "committed"
			return nil
		}
		return errResState
	})
}

func (s fakeStock) Release(_ context.Context, orderID string) error {
	return s.transition(orderID, func(r *fakeReservation) error {
		switch r.state {
		case "released":
			return nil
		case "held":
			for _, l := range r.lines {
				s.w.items[l.SKU].reserved -= l.Quantity
			}
			r.state = "released"
			return nil
		case "committed":
			return errCommitted
		}
		return errResState
	})
}

func (s fakeStock) Return(_ context.Context, orderID string) error {
	return s.transition(orderID, func(r *fakeReservation) error {
		switch r.state {
		case "returned":
			return nil
		case "committed":
			for _, l := range r.lines {
				s.w.items[l.SKU].onHand += l.Quantity
			}
			r.state = "returned"
			return nil
		}
		return errResState
	})
}

func (s fakeStock) Reservation(_ context.Context, orderID string) (contract.Reservation, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	r, ok := s.w.reservations[orderID]
	if !ok {
		return contract.Reservation{}, errNoRes
	}
	return contract.Reservation{OrderID: orderID, State: r.state}, nil
}

type fakePayments struct {
	w   *world
	gen int64
}

func (p fakePayments) Charge(_ context.Context, customerID string, amount int64, orderID string) (string, error) {
	var id string
	err := p.w.call(p.gen, func() error {
		w := p.w
		key := orderID + "|" + customerID + "|" + fmt.Sprint(amount)
		if o, ok := w.keys[orderID]; ok {
			if o.err == nil && w.payments[o.paymentID].amount != amount {
				return fmt.Errorf("idempotency key reused with another body: %s", key)
			}
			id = o.paymentID
			return o.err
		}
		c := w.customers[customerID]
		var outcome chargeOutcome
		switch {
		case c == nil:
			outcome.err = &fault.Error{Kind: fault.NotFound, Code: "customer_not_found", Msg: "customer not found"}
		case c.outage:
			return errGateway // a 5xx: not stored, the key stays free
		case c.decline:
			outcome.err = errDeclined
		case c.credit < amount:
			outcome.err = errCredit
		default:
			c.credit -= amount
			w.nextPayment++
			pay := &fakePayment{id: fmt.Sprintf("pay-%d", w.nextPayment), customer: customerID, ref: orderID, amount: amount}
			w.payments[pay.id] = pay
			outcome.paymentID = pay.id
		}
		w.keys[orderID] = outcome
		id = outcome.paymentID
		return outcome.err
	})
	p.w.mu.Lock() // as in Reserve: a late answer writes id after the call returned
	defer p.w.mu.Unlock()
	return id, err
}

func (p fakePayments) Refund(_ context.Context, _, paymentID string) error {
	return p.w.call(p.gen, func() error {
		pay, ok := p.w.payments[paymentID]
		if !ok {
			return errNoPayment
		}
		if !pay.refunded {
			pay.refunded = true
			p.w.customers[pay.customer].credit += pay.amount
		}
		return nil
	})
}

func (p fakePayments) Payment(_ context.Context, paymentID string) (contract.Payment, error) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	pay, ok := p.w.payments[paymentID]
	if !ok {
		return contract.Payment{}, errNoPayment
	}
	status := "captured"
	if pay.refunded {
		status = "refunded"
	}
	return contract.Payment{ID: pay.id, CustomerID: pay.customer, AmountCents: pay.amount, Reference: pay.ref, Status: status}, nil
}

// customersPort says every customer of the world exists.
type customersPort struct{ w *world }

func (c customersPort) Exists(_ context.Context, id string) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if _, ok := c.w.customers[id]; !ok {
		return &fault.Error{Kind: fault.NotFound, Code: "customer_not_found", Msg: "customer not found"}
	}
	return nil
}
