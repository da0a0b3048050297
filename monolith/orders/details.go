package orders

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
)

// Parts of an order's details, as MissingPart names them.
const (
	PartPayment     = "payment"
	PartReservation = "reservation"
)

// codeUnavailable is a part that did not come in time, or whose owner did not answer.
const codeUnavailable = "unavailable"

// Details is an order with its payment and its reservation (API composition).
type Details struct {
	Order       Order
	Payment     *contract.Payment
	Reservation *contract.Reservation
	// Missing lists the parts that could not be had, and why.
	Missing []contract.MissingPart
}

// Wire returns the details as the HTTP contract shows them.
func (d Details) Wire() contract.OrderDetails {
	out := contract.OrderDetails{Order: d.Order.Wire(), Payment: d.Payment, Reservation: d.Reservation, Missing: d.Missing}
	if out.Missing == nil {
		out.Missing = []contract.MissingPart{}
	}
	return out
}

// Details returns an order with its payment and its reservation, each asked of the side
// that owns it — the monolith's module, or the extracted service — at the same time. Each
// part waits at most Options.DetailsTimeout: a part that does not come (its owner is down,
// slow, or has no such record) is left out and listed in Missing with the reason, and the
// rest is returned all the same. An order without a payment (total 0, or not charged yet)
// has none to miss.
func (s *Service) Details(ctx context.Context, id string) (Details, error) {
	o, err := s.Order(ctx, id)
	if err != nil {
		return Details{}, err
	}
	d := Details{Order: o}
	var wg sync.WaitGroup
	var mu sync.Mutex
	miss := func(part string, err error) {
		mu.Lock()
		defer mu.Unlock()
		d.Missing = append(d.Missing, missing(part, err))
	}
	if o.PaymentID != "" {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, s.opts.DetailsTimeout)
			defer cancel()
			p, err := s.payments.Payment(ctx, o.PaymentID)
			if err != nil {
				miss(PartPayment, err)
				return
			}
			mu.Lock()
			d.Payment = &p
			mu.Unlock()
		})
	}
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, s.opts.DetailsTimeout)
		defer cancel()
		r, err := s.stock.Reservation(ctx, o.ID)
		if err != nil {
			miss(PartReservation, err)
			return
		}
		mu.Lock()
		d.Reservation = &r
		mu.Unlock()
	})
	wg.Wait()
	// Always in the same order, whichever failed first.
	if len(d.Missing) == 2 && d.Missing[0].Part != PartPayment {
		d.Missing[0], d.Missing[1] = d.Missing[1], d.Missing[0]
	}
	return d, nil
}

// missing says why part could not be had: the owner's own problem code when it answered
// one (payment_not_found, …), else unavailable.
func missing(part string, err error) contract.MissingPart {
	if fe, ok := fault.As(err); ok && fe.Kind != fault.Internal {
		return contract.MissingPart{Part: part, Code: fe.Code, Detail: fe.Msg}
	}
	detail := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		detail = fmt.Sprintf("no answer in time: %v", err)
	}
	return contract.MissingPart{Part: part, Code: codeUnavailable, Detail: detail}
}
