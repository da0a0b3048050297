package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/inbox"
)

// PaymentsConsumer is the durable bus consumer through which the orders module learns of
// the payments service's captures, and its name in the inbox.
const PaymentsConsumer = "monolith-orders-payments"

// PaymentsServiceSource is the source of the extracted payments service's events; the
// monolith's own payments module emits its captures as /monolith/payments, and those are
// made in the saga's own transaction (in process), so they need no event.
const PaymentsServiceSource = "/services/payments"

// viaCaptured is how a charge step completed by the payment_captured event says so.
const viaCaptured = "payment_captured event"

// FollowPayments completes sagas' charge steps from the payments service's
// payment_captured events on b, consumed through the inbox (each event applies once), until
// ctx ends. A capture for an order whose saga is still waiting for its charge's answer — it
// timed out, or the monolith restarted meanwhile — completes the step and moves the saga on
// to confirm; a capture for a saga compensating gives its refund the payment id. It returns
// nil when ctx ends, and an error if the consumer cannot run.
func (s *Service) FollowPayments(ctx context.Context, b *bus.Bus, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	handle := func(ctx context.Context, evs []event.Event) error {
		var changed []string
		err := inbox.HandleBatch(ctx, s.db, PaymentsConsumer, evs, func(ctx context.Context, tx *gorm.DB, e event.Event) error {
			if e.Source != PaymentsServiceSource {
				return nil
			}
			var d contract.PaymentCaptured
			if err := e.Decode(&d); err != nil {
				return bus.Permanent(err)
			}
			ok, err := s.capture(ctx, tx, d.Reference, d.PaymentID)
			if ok {
				changed = append(changed, d.Reference)
			}
			return err
		})
		if err != nil {
			changed = nil
			return err
		}
		for _, id := range changed {
			s.sagas.Wake(id)
		}
		return nil
	}
	err := b.ConsumeBatch(ctx, PaymentsConsumer, handle, bus.ConsumerOptions{
		Types: []string{contract.TypePaymentCaptured}, Logger: logger})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("orders: following payments: %w", err)
	}
	return nil
}

// capture records, in tx, that payment paymentID was captured for order orderID. It reports
// whether a saga changed.
func (s *Service) capture(ctx context.Context, tx *gorm.DB, orderID, paymentID string) (bool, error) {
	_, changed, err := s.sagas.Change(ctx, tx, orderID, func(sg *domain.Saga) bool {
		if sg.PaymentID != "" || sg.Kind != domain.SagaPlace {
			return false
		}
		now := s.sagas.Now()
		switch sg.State {
		case domain.SagaRunning:
			st := sg.Current()
			if st == nil || st.Name != domain.StepCharge {
				return false
			}
			if err := sg.Apply(domain.Outcome{PaymentID: paymentID}, now, domain.Policy{}); err != nil {
				return false
			}
			if c := sg.Step(domain.StepCharge); c != nil {
				c.Via = viaCaptured
			}
			return true
		case domain.SagaCompensating, domain.SagaStuck:
			// The refund need not ask the payments side what became of the charge.
			sg.PaymentID = paymentID
			sg.NextAt = now
			return true
		}
		return false
	})
	if errors.Is(err, domain.ErrNotFound) {
		return false, nil // not an order of a saga: placed in process, or not an order at all
	}
	return changed, err
}
