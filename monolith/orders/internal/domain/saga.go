package domain

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/web"
)

// ErrOutcomeUnknown marks a call whose outcome the caller cannot know: it may have reached
// the other side and been applied there without the answer coming back (a timeout, a
// connection lost after the request was written). The saga then treats the step as perhaps
// done: its compensation stays due.
var ErrOutcomeUnknown = errors.New("the call's outcome is unknown: it may have been applied")

// Saga kinds: what the saga does to its order.
const (
	// SagaPlace places an order: reserve → charge → confirm, compensated in reverse.
	SagaPlace = "place"
	// SagaCancel cancels a placed order: refund, then return its stock.
	SagaCancel = "cancel"
)

// Saga states. Placed and Cancelled are terminal (a placed order's saga runs again as a
// SagaCancel when the order is cancelled).
const (
	SagaRunning      = "running"
	SagaCompensating = "compensating"
	SagaStuck        = "stuck"
	SagaPlaced       = "placed"
	SagaCancelled    = "cancelled"
)

// SagaStates lists every saga state, for validation of filters.
var SagaStates = []string{SagaRunning, SagaCompensating, SagaStuck, SagaPlaced, SagaCancelled}

// Steps: three forward steps, and the compensations that undo them.
const (
	StepReserve = "reserve"
	StepCharge  = "charge"
	StepConfirm = "confirm"
	StepRefund  = "refund"
	StepRelease = "release"
	StepReturn  = "return"
)

// Step statuses.
const (
	// StepPending is a compensation recorded, before its step ran, and not tried yet.
	StepPending = "pending"
	// StepRunning is a step tried at least once with no final outcome yet.
	StepRunning = "running"
	// StepDone is a step that took effect.
	StepDone = "done"
	// StepFailed is a step refused for good (its reason is the saga's), or a compensation
	// that gave up (the saga is stuck).
	StepFailed = "failed"
	// StepSkipped is a step that was not needed: a charge of nothing, the compensation of a
	// step that never took effect or of an order that was placed.
	StepSkipped = "skipped"
)

// compensationOf names the compensation recorded when a forward step starts.
var compensationOf = map[string]string{StepReserve: StepRelease, StepCharge: StepRefund}

// Codes of the reasons the saga itself gives.
const (
	// CodeSagaTimeout is the reason of a saga that did not place its order in time.
	CodeSagaTimeout = "order_timeout"
	// CodeCancelled is the reason of an order cancelled at the client's request.
	CodeCancelled = "cancelled"
	// codeGatewayUnavailable is the payments contract's outage answer: a refusal, not a fault
	// of the service, so a saga does not retry it.
	codeGatewayUnavailable = "gateway_unavailable"
	// codeInFlight is the idempotency middleware's "a request with this key is running":
	// the answer is on its way, so ask again.
	codeInFlight = "idempotency_in_flight"
)

// SagaStep is one step's progress, as persisted with its saga.
type SagaStep struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// Uncertain is set once an attempt may have been applied without its answer arriving.
	Uncertain bool `json:"uncertain,omitempty"`
	// Error is the last failed attempt's error.
	Error string `json:"error,omitempty"`
	// LastAt is when the last attempt ended.
	LastAt *time.Time `json:"last_at,omitempty"`
	// Via says how the step completed when not by its own call's answer.
	Via string `json:"via,omitempty"`
}

// Reason says why a saga compensates: the domain error a step was refused with, or the
// saga's own (CodeSagaTimeout, CodeCancelled). It is kept whole so the order's client gets
// the answer the module would have given in one transaction.
type Reason struct {
	Kind   fault.Kind    `json:"kind"`
	Code   string        `json:"code"`
	Msg    string        `json:"msg"`
	Fields []fault.Field `json:"fields,omitempty"`
}

// Err returns the reason as the domain error it stands for.
func (r Reason) Err() error {
	return &fault.Error{Kind: r.Kind, Code: r.Code, Msg: r.Msg, Fields: slices.Clone(r.Fields)}
}

// reasonOf returns the reason a domain error gives.
func reasonOf(fe *fault.Error) *Reason {
	return &Reason{Kind: fe.Kind, Code: fe.Code, Msg: fe.Msg, Fields: slices.Clone(fe.Fields)}
}

// Saga is an order's saga: what it was asked, what it has done and what it still has to do.
// Its state changes only through Begin, Apply, Timeout, Resume and CancelPlaced, and every
// change is persisted with its Version raised by one (optimistic concurrency).
type Saga struct {
	ID   string // the order's id
	Kind string
	// RequestKey identifies the request that started the saga (its Idempotency-Key, hashed
	// with its scope): a request run again after a crash finds its saga. Empty: none.
	RequestKey string
	CustomerID string
	Request    []RequestLine
	// Lines are the reserved lines, priced; empty until the reservation is made.
	Lines      []Line
	TotalCents int64
	PaymentID  string
	State      string
	Steps      []SagaStep
	Reason     *Reason
	Version    int64
	// Owner is the process driving the saga, until LeaseUntil.
	Owner      string
	LeaseUntil time.Time
	// NextAt is the earliest time the next attempt may run (backoff).
	NextAt time.Time
	// Deadline is when a saga still running is cancelled and compensated.
	Deadline   time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

// NewPlaceSaga returns the saga that places an order, about to reserve its stock: the
// release that would undo the reservation is recorded with it, before the reservation is
// tried.
func NewPlaceSaga(id, requestKey string, p PlaceOrder, now time.Time, timeout time.Duration) Saga {
	s := Saga{ID: id, Kind: SagaPlace, RequestKey: requestKey, CustomerID: p.CustomerID, Request: slices.Clone(p.Lines),
		State: SagaRunning, Version: 1, NextAt: now, Deadline: now.Add(timeout), CreatedAt: now, UpdatedAt: now}
	s.begin(StepReserve, now)
	return s
}

// Terminal reports whether the saga has reached an end: its order is placed or cancelled.
func (s *Saga) Terminal() bool { return s.State == SagaPlaced || s.State == SagaCancelled }

// Step returns the step named name (the last one of that name), or nil.
func (s *Saga) Step(name string) *SagaStep {
	for i := len(s.Steps) - 1; i >= 0; i-- {
		if s.Steps[i].Name == name {
			return &s.Steps[i]
		}
	}
	return nil
}

// Current returns the step to run next: the running forward step, or the latest
// compensation still to do; nil when the saga is terminal or stuck.
func (s *Saga) Current() *SagaStep {
	switch s.State {
	case SagaRunning:
		for i := range s.Steps {
			if st := &s.Steps[i]; isForward(st.Name) && st.Status == StepRunning {
				return st
			}
		}
	case SagaCompensating:
		// Compensations run in the reverse order of their steps, the last recorded first; one
		// that fails takes turns with the others (fewest attempts first), so a refund waiting
		// for the payments service to come back does not keep the stock held.
		var next *SagaStep
		for i := len(s.Steps) - 1; i >= 0; i-- {
			st := &s.Steps[i]
			if isForward(st.Name) || (st.Status != StepPending && st.Status != StepRunning) {
				continue
			}
			if next == nil || st.Attempts < next.Attempts {
				next = st
			}
		}
		return next
	}
	return nil
}

func isForward(name string) bool {
	return name == StepReserve || name == StepCharge || name == StepConfirm
}

// begin starts forward step name, recording its compensation (if it has one) first.
func (s *Saga) begin(name string, now time.Time) {
	if c, ok := compensationOf[name]; ok {
		s.Steps = append(s.Steps, SagaStep{Name: c, Status: StepPending})
	}
	s.Steps = append(s.Steps, SagaStep{Name: name, Status: StepRunning})
	s.NextAt = now
}

// Outcome is what an attempt at the current step came to.
type Outcome struct {
	// Err is nil when the step took effect.
	Err error
	// Lines are the reserved lines (reserve).
	Lines []Line
	// PaymentID is the payment made (charge), or found by a refund asking the payments side
	// what became of the charge.
	PaymentID string
	// Settled reports, for a release that found no reservation, that the reservation can no
	// longer appear (a late reserve request has had its time): nothing is held.
	Settled bool
	// WaitUntil, when set with Err, is not a failure: the step cannot be decided before
	// then (a release waiting for a late reserve request to settle). The attempt is not
	// counted against the compensation's bound.
	WaitUntil time.Time
}

// Policy is how a saga retries.
type Policy struct {
	// Backoff is the base of the exponential backoff between attempts of a step, MaxBackoff
	// caps one wait (full jitter: a random wait up to the capped base × 2^(attempts-1)).
	Backoff, MaxBackoff time.Duration
	// CompensationAttempts bounds the attempts of one compensation; past it the saga is
	// stuck.
	CompensationAttempts int
}

// Apply records the outcome of an attempt at the current step, begun at now, and moves the
// saga on: to the next step, to compensating (a step refused for good), to placed or
// cancelled, to stuck (a compensation out of attempts), or to another attempt after a
// backoff.
func (s *Saga) Apply(o Outcome, now time.Time, p Policy) error {
	st := s.Current()
	if st == nil {
		return fmt.Errorf("saga %s: nothing to apply an outcome to in state %s", s.ID, s.State)
	}
	if o.Err != nil && !o.WaitUntil.IsZero() {
		st.Status, st.Error = StepRunning, o.Err.Error()
		s.NextAt, s.UpdatedAt = o.WaitUntil, now
		return nil
	}
	st.Attempts++
	at := now
	st.LastAt = &at
	if errors.Is(o.Err, ErrOutcomeUnknown) {
		st.Uncertain = true
	}
	s.UpdatedAt = now
	if isForward(st.Name) {
		s.applyForward(st, o, now, p)
	} else {
		s.applyCompensation(st, o, now, p)
	}
	return nil
}

func (s *Saga) applyForward(st *SagaStep, o Outcome, now time.Time, p Policy) {
	if o.Err != nil {
		if fe, final := Refusal(o.Err); final {
			st.Status, st.Error = StepFailed, o.Err.Error()
			s.compensate(reasonOf(fe), now)
			return
		}
		s.retry(st, o.Err, now, p)
		return
	}
	st.Status, st.Error = StepDone, ""
	switch st.Name {
	case StepReserve:
		s.Lines = slices.Clone(o.Lines)
		total, err := Total(o.Lines)
		if err != nil {
			fe, ok := fault.As(err)
			if !ok {
				fe = &fault.Error{Kind: fault.Internal, Code: "internal", Msg: err.Error()}
			}
			s.compensate(reasonOf(fe), now)
			return
		}
		s.TotalCents = total
		if total == 0 {
			// Nothing to charge: the step is recorded as not needed, and nothing to refund.
			s.Steps = append(s.Steps, SagaStep{Name: StepCharge, Status: StepSkipped})
			s.begin(StepConfirm, now)
			return
		}
		s.begin(StepCharge, now)
	case StepCharge:
		s.PaymentID = o.PaymentID
		s.begin(StepConfirm, now)
	case StepConfirm:
		s.State = SagaPlaced
		s.finish(now)
	}
}

func (s *Saga) applyCompensation(st *SagaStep, o Outcome, now time.Time, p Policy) {
	switch {
	case o.Err == nil && st.Name == StepRefund && o.PaymentID == "" && s.PaymentID == "":
		// The payments side says no charge was captured for the order: nothing to refund.
		st.Status, st.Error = StepSkipped, ""
	case o.Err == nil && st.Name == StepRelease && o.Settled:
		st.Status, st.Error = StepSkipped, ""
	case o.Err == nil:
		if o.PaymentID != "" {
			s.PaymentID = o.PaymentID
		}
		st.Status, st.Error = StepDone, ""
	default:
		if o.PaymentID != "" {
			// The charge was found but the refund failed: keep what was learnt.
			s.PaymentID = o.PaymentID
		}
		if st.Attempts >= max(p.CompensationAttempts, 1) {
			st.Status, st.Error = StepFailed, o.Err.Error()
			s.State = SagaStuck
			return
		}
		s.retry(st, o.Err, now, p)
		return
	}
	if s.Current() == nil {
		s.State = SagaCancelled
		s.finish(now)
		return
	}
	s.NextAt = now
}

// retry schedules another attempt at st after a backoff.
func (s *Saga) retry(st *SagaStep, err error, now time.Time, p Policy) {
	st.Status, st.Error = StepRunning, err.Error()
	s.NextAt = now.Add(Backoff(st.Attempts, p.Backoff, p.MaxBackoff))
}

// Backoff is the wait after attempt n (from 1) failed: a random duration up to
// base×2^(n-1), capped at ceiling (full jitter).
func Backoff(n int, base, ceiling time.Duration) time.Duration {
	if base <= 0 {
		base = 50 * time.Millisecond
	}
	if ceiling < base {
		ceiling = base
	}
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return rand.N(min(d, ceiling) + 1)
}

// compensate turns the saga to undoing what it did, for reason. The compensation of a step
// that cannot have taken effect — refused for good, or never answered after no attempt that
// could have reached the other side — is skipped; every other recorded compensation runs.
func (s *Saga) compensate(reason *Reason, now time.Time) {
	s.State, s.Reason, s.NextAt = SagaCompensating, reason, now
	for i := range s.Steps {
		st := &s.Steps[i]
		if !isForward(st.Name) {
			continue
		}
		if st.Status == StepRunning {
			st.Status = StepFailed
			if st.Error == "" {
				st.Error = "not tried before the saga compensated"
			}
		}
		c, ok := compensationOf[st.Name]
		if !ok || st.Status == StepDone || st.Uncertain {
			continue
		}
		// Refused, or never answered by an attempt that could have reached the other side.
		for j := i - 1; j >= 0; j-- {
			if s.Steps[j].Name == c && s.Steps[j].Status == StepPending {
				s.Steps[j].Status = StepSkipped
				break
			}
		}
	}
	if s.Current() == nil {
		s.State = SagaCancelled
		s.finish(now)
	}
}

// Timeout cancels a saga still running past its deadline: it compensates whatever may have
// taken effect.
func (s *Saga) Timeout(now time.Time, cause string) {
	msg := fmt.Sprintf("the order could not be placed within %s", s.Deadline.Sub(s.CreatedAt).Round(time.Millisecond))
	if cause != "" {
		msg += ": " + cause
	}
	s.UpdatedAt = now
	s.compensate(&Reason{Kind: fault.Unavailable, Code: CodeSagaTimeout, Msg: msg}, now)
}

// TakeOver records that the saga passes to another process (its last one died, or stopped
// while it drove it): an attempt that process was making may have been sent without its
// outcome being recorded, and may still arrive, so from now the running step counts as
// perhaps done — its compensation will run — and as last tried now.
func (s *Saga) TakeOver(now time.Time) {
	for i := range s.Steps {
		if st := &s.Steps[i]; isForward(st.Name) && st.Status == StepRunning {
			at := now
			st.Uncertain, st.LastAt = true, &at
		}
	}
}

// Resume takes a stuck saga up again: its failed compensation gets a fresh set of attempts,
// at once. It reports whether the saga was stuck.
func (s *Saga) Resume(now time.Time) bool {
	if s.State != SagaStuck {
		return false
	}
	for i := len(s.Steps) - 1; i >= 0; i-- {
		if st := &s.Steps[i]; !isForward(st.Name) && st.Status == StepFailed {
			st.Status, st.Attempts = StepRunning, 0
			break
		}
	}
	s.State, s.NextAt, s.UpdatedAt = SagaCompensating, now, now
	return true
}

// CancelPlaced turns a placed order's saga into its cancellation: refund the payment (when
// there is one), then return the stock. A saga that is not placed is left as it is, and
// CancelPlaced reports false.
func (s *Saga) CancelPlaced(now time.Time) bool {
	if s.State != SagaPlaced {
		return false
	}
	s.Kind, s.State, s.NextAt, s.UpdatedAt, s.FinishedAt = SagaCancel, SagaCompensating, now, now, nil
	s.Reason = &Reason{Kind: fault.Conflict, Code: CodeCancelled, Msg: "cancelled by request"}
	// Compensations run last recorded first: the refund, then the return.
	s.Steps = append(s.Steps, SagaStep{Name: StepReturn, Status: StepPending})
	refund := StepPending
	if s.PaymentID == "" {
		refund = StepSkipped
	}
	s.Steps = append(s.Steps, SagaStep{Name: StepRefund, Status: refund})
	return true
}

// NewCancelSaga returns the saga that cancels order o, placed without a saga (in one
// transaction, before the monolith's modules went remote).
func NewCancelSaga(o Order, now time.Time) Saga {
	s := Saga{ID: o.ID, Kind: SagaPlace, CustomerID: o.CustomerID, Lines: slices.Clone(o.Lines), TotalCents: o.TotalCents,
		PaymentID: o.PaymentID, State: SagaPlaced, Version: 1, CreatedAt: o.CreatedAt, Deadline: o.CreatedAt,
		Steps: []SagaStep{{Name: StepReserve, Status: StepDone}, {Name: StepCharge, Status: StepDone}, {Name: StepConfirm, Status: StepDone}}}
	for _, l := range o.Lines {
		s.Request = append(s.Request, RequestLine{SKU: l.SKU, Quantity: l.Quantity})
	}
	s.CancelPlaced(now)
	return s
}

func (s *Saga) finish(now time.Time) {
	at := now
	s.FinishedAt = &at
	for i := range s.Steps {
		if s.Steps[i].Status == StepPending {
			// Compensations of a placed order are not needed (a cancellation records its own).
			s.Steps[i].Status = StepSkipped
		}
	}
}

// Refusal reports whether err is a refusal for good — the other side said no, and asking
// again would get the same answer — and returns its domain error. Anything else (no answer,
// a 5xx, a breaker open, a payments customer copy still catching up, a key still in flight)
// is worth another attempt.
func Refusal(err error) (*fault.Error, bool) {
	fe, ok := fault.As(err)
	if !ok {
		return nil, false
	}
	switch fe.Kind {
	case fault.Internal:
		return nil, false
	case fault.Unavailable:
		return fe, fe.Code == codeGatewayUnavailable
	case fault.Conflict:
		return fe, fe.Code != codeInFlight
	}
	return fe, true
}

// Wire returns the saga's progress as the HTTP contract shows it.
func (s *Saga) Wire() *contract.OrderSaga {
	out := &contract.OrderSaga{Kind: s.Kind, State: s.State, Steps: make([]contract.OrderSagaStep, len(s.Steps)),
		Deadline: contract.Timestamp(s.Deadline), UpdatedAt: contract.Timestamp(s.UpdatedAt)}
	if st := s.Current(); st != nil {
		out.Step = st.Name
	}
	for i, st := range s.Steps {
		out.Steps[i] = contract.OrderSagaStep{Name: st.Name, Status: st.Status, Attempts: st.Attempts, Error: st.Error, Via: st.Via}
	}
	if s.Reason != nil {
		p := web.ToProblem(s.Reason.Err())
		out.Reason = &contract.SagaReason{Status: p.Status, Code: p.Code, Detail: p.Detail}
	}
	return out
}

// View returns the order a saga stands for before it is recorded as an order (pending, or
// cancelled because it could not be placed): the lines as reserved, or as asked (priced 0)
// until the stock is reserved.
func (s *Saga) View() Order {
	o := Order{ID: s.ID, CustomerID: s.CustomerID, Status: Pending, TotalCents: s.TotalCents, PaymentID: s.PaymentID,
		Lines: slices.Clone(s.Lines), CreatedAt: s.CreatedAt, Saga: s}
	if len(o.Lines) == 0 {
		for _, l := range s.Request {
			o.Lines = append(o.Lines, Line{SKU: l.SKU, Quantity: l.Quantity})
		}
	}
	if s.State == SagaCancelled {
		o.Status, o.CancelledAt = Cancelled, s.FinishedAt
	}
	return o
}
