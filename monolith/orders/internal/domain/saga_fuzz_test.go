package domain

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/fault"
)

// sagaWorld is what the other side holds while a fuzzed saga runs: whether stock is held
// for the order and whether money was taken. The fuzzer decides what each call comes to;
// the world keeps those decisions consistent with each other (a call refused for good took
// no effect, a retried call that took effect answers as done), as the real services'
// idempotency keys do.
type sagaWorld struct {
	reserved, charged bool
}

// fuzzOp is one input byte: its low three bits pick what happens next, bit 3 a variant (a
// free item, or whether a call whose answer was lost took effect).
type fuzzOp byte

func (op fuzzOp) kind() byte    { return byte(op) & 7 }
func (op fuzzOp) variant() bool { return op&8 != 0 }

// FuzzSagaTransitions drives a place-order saga through any sequence of outcomes,
// timeouts, take-overs, resumes and cancellations, and checks after every step that the
// saga is in a state the runner can act on (a step to run exactly when it is running or
// compensating, every compensation recorded before its step, every compensation within its
// attempt bound) and that it never ends having lost anything: a placed order holds its stock
// and its money, a cancelled one holds neither.
func FuzzSagaTransitions(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 0},                    // reserve, charge, confirm: placed
		{8, 0},                       // a free item: no charge, placed
		{1},                          // reserve refused: cancelled, nothing held
		{0, 1},                       // charge declined: the stock is released
		{0, 0, 0, 15, 0, 0},          // placed, then cancelled: refund, return
		{0, 11, 5, 0, 0},             // charge lost in flight (took effect), timeout: refund and release
		{0, 3, 5, 0, 0},              // charge lost in flight (no effect), timeout
		{0, 6, 5, 0, 0},              // the process died mid-charge: another takes over
		{0, 1, 2, 2, 2, 7, 0},        // release fails until stuck, resumed, released
		{0, 1, 4, 0},                 // release waits for a late reservation to settle
		{2, 2, 3, 0, 2, 0, 0, 15, 3}, // retries everywhere, cancelled, refund lost
	} {
		f.Add(seed)
	}
	f.Fuzz(runSagaOps)
}

// runSagaOps runs one fuzzed sequence of ops on a fresh place-order saga.
func runSagaOps(t *testing.T, ops []byte) {
	if len(ops) > 512 {
		ops = ops[:512] // longer runs repeat what shorter ones reach
	}
	p := Policy{Backoff: time.Millisecond, MaxBackoff: 8 * time.Millisecond, CompensationAttempts: 3}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewPlaceSaga("ord-1", "key-1", PlaceOrder{CustomerID: "cus-1", Lines: []RequestLine{{SKU: "A-1", Quantity: 2}}}, now, time.Minute)
	var w sagaWorld
	checkSaga(t, &s, w, p, "start")
	for i, b := range ops {
		op := fuzzOp(b)
		now = now.Add(time.Millisecond)
		switch op.kind() {
		case 0, 1, 2, 3, 4:
			cur := s.Current()
			err := s.Apply(w.outcome(&s, op, now), now, p)
			if (cur == nil) != (err != nil) {
				t.Fatalf("op %d: Apply in state %s with current step %v returned %v", i, s.State, cur, err)
			}
		case 5:
			if s.State == SagaRunning { // the runner times out only a running saga
				s.Timeout(now, "")
			}
		case 6:
			if st := s.Current(); st != nil && s.State == SagaRunning && op.variant() {
				w.effect(st.Name) // the dead process's call arrived
			}
			s.TakeOver(now)
		case 7:
			if op.variant() {
				s.CancelPlaced(now)
			} else {
				s.Resume(now)
			}
		}
		checkSaga(t, &s, w, p, fmt.Sprintf("op %d (%d)", i, b))
	}
}

// outcome is what the other side answers to an attempt at the saga's current step.
func (w *sagaWorld) outcome(s *Saga, op fuzzOp, now time.Time) Outcome {
	st := s.Current()
	if st == nil {
		return Outcome{}
	}
	kind := op.kind()
	if kind == 1 && isForward(st.Name) && w.took(st.Name) {
		kind = 0 // a retried call that took effect answers as done, never as refused
	}
	switch kind {
	case 0:
		return w.succeed(st.Name, op.variant())
	case 1:
		if isForward(st.Name) {
			refusals := map[string]error{
				StepReserve: fault.New(fault.Conflict, "insufficient_stock", "not enough stock"),
				StepCharge:  fault.New(fault.Declined, "card_declined", "declined"),
				StepConfirm: fault.New(fault.Conflict, "reservation_expired", "the reservation expired"),
			}
			return Outcome{Err: refusals[st.Name]}
		}
		// A compensation is never refused for good: any error is worth another attempt.
		return Outcome{Err: fault.New(fault.Conflict, "conflict", "try again")}
	case 2:
		return Outcome{Err: errors.New("connection refused")}
	case 3:
		if op.variant() {
			w.effect(st.Name)
		}
		return Outcome{Err: fmt.Errorf("calling %s: %w", st.Name, ErrOutcomeUnknown)}
	default:
		return Outcome{Err: errors.New("a late request may still arrive"), WaitUntil: now.Add(5 * time.Millisecond)}
	}
}

// took reports whether a forward step has taken effect on the other side.
func (w *sagaWorld) took(step string) bool {
	switch step {
	case StepReserve:
		return w.reserved
	case StepCharge:
		return w.charged
	}
	return false
}

// effect applies step on the other side.
func (w *sagaWorld) effect(step string) {
	switch step {
	case StepReserve:
		w.reserved = true
	case StepCharge:
		w.charged = true
	case StepRelease, StepReturn:
		w.reserved = false
	case StepRefund:
		w.charged = false
	}
}

// succeed applies step and answers as the service would; free makes the reserved item
// cost nothing.
func (w *sagaWorld) succeed(step string, free bool) Outcome {
	switch step {
	case StepReserve:
		w.reserved = true
		price := int64(350)
		if free {
			price = 0
		}
		return Outcome{Lines: []Line{{SKU: "A-1", Quantity: 2, UnitPriceCents: price}}}
	case StepCharge:
		w.charged = true
		return Outcome{PaymentID: "pay-1"}
	case StepRelease:
		held := w.reserved
		w.reserved = false
		return Outcome{Settled: !held}
	case StepRefund:
		taken := w.charged
		w.charged = false
		if taken {
			return Outcome{PaymentID: "pay-1"}
		}
		return Outcome{}
	case StepReturn:
		w.reserved = false
	}
	return Outcome{}
}

// checkSaga fails t when s breaks an invariant of the saga state machine, or when it has
// ended holding the wrong things in w.
func checkSaga(t *testing.T, s *Saga, w sagaWorld, p Policy, at string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s\nsaga: state %s, steps %+v, reason %+v, world %+v", at, fmt.Sprintf(format, args...), s.State, s.Steps, s.Reason, w)
	}
	if !slices.Contains(SagaStates, s.State) {
		fail("unknown state")
	}
	var forward []string
	for i, st := range s.Steps {
		if isForward(st.Name) {
			forward = append(forward, st.Name)
			if c, ok := compensationOf[st.Name]; ok && !(st.Name == StepCharge && st.Status == StepSkipped) {
				if i == 0 || s.Steps[i-1].Name != c {
					fail("step %s at %d is not preceded by its compensation %s", st.Name, i, c)
				}
			}
			continue
		}
		if st.Attempts > max(p.CompensationAttempts, 1) {
			fail("compensation %s made %d attempts, past the bound %d", st.Name, st.Attempts, p.CompensationAttempts)
		}
	}
	order := []string{StepReserve, StepCharge, StepConfirm}
	if len(forward) > len(order) || !slices.Equal(forward, order[:len(forward)]) {
		fail("forward steps %v out of order or repeated", forward)
	}
	cur := s.Current()
	statuses := func(names ...string) (out []string) {
		for _, st := range s.Steps {
			if slices.Contains(names, st.Name) {
				out = append(out, st.Status)
			}
		}
		return out
	}
	open := func() bool {
		for _, st := range s.Steps {
			if st.Status == StepPending || st.Status == StepRunning {
				return true
			}
		}
		return false
	}
	switch s.State {
	case SagaRunning:
		if cur == nil || !isForward(cur.Name) || cur.Status != StepRunning {
			fail("running without a forward step to run (current %+v)", cur)
		}
		for _, st := range s.Steps {
			if !isForward(st.Name) && st.Status != StepPending {
				fail("compensation %s is %s while the saga still runs forward", st.Name, st.Status)
			}
		}
	case SagaCompensating:
		if cur == nil || isForward(cur.Name) {
			fail("compensating without a compensation to run (current %+v)", cur)
		}
		if s.Reason == nil {
			fail("compensating without a reason")
		}
	case SagaStuck:
		if !slices.Contains(statuses(StepRelease, StepRefund, StepReturn), StepFailed) {
			fail("stuck without a failed compensation")
		}
	case SagaPlaced:
		if s.FinishedAt == nil || open() || cur != nil {
			fail("placed with work left")
		}
		if !w.reserved || w.charged != (s.TotalCents > 0) {
			fail("placed, total %d, but the other side holds %+v", s.TotalCents, w)
		}
		if (s.PaymentID != "") != (s.TotalCents > 0) {
			fail("placed, total %d, with payment %q", s.TotalCents, s.PaymentID)
		}
	case SagaCancelled:
		if s.FinishedAt == nil || open() || cur != nil || s.Reason == nil {
			fail("cancelled with work left, or without a reason")
		}
		if w.reserved || w.charged {
			fail("cancelled, but the other side still holds %+v", w)
		}
	}
}
