package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/event"
)

// Tail calls fn with every event published from now on (from the start of the stream if all
// is set) until ctx is done or fn returns an error. It uses an ephemeral consumer that leaves
// nothing behind on the server.
func (b *natsBus) Tail(ctx context.Context, all bool, fn func(e event.Event, subject string) error) error {
	policy := jetstream.DeliverNewPolicy
	if all {
		policy = jetstream.DeliverAllPolicy
	}
	cons, err := b.js.OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{DeliverPolicy: policy})
	if err != nil {
		return fmt.Errorf("tailing events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tailing events: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		e, err := unmarshalEvent(msg.Data())
		if err != nil {
			e = event.Event{ID: msg.Headers().Get(HeaderID), Type: msg.Headers().Get(HeaderType)}
		}
		if err := fn(e, msg.Subject()); err != nil {
			return err
		}
	}
}
