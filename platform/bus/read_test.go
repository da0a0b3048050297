package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/ficus-project/ficus/platform/contract"
)

// TestReadFromAPosition: Position and LastOf say where the stream stands; Read delivers the
// events of the types asked for after a position of the caller's, in order with their
// sequence numbers, says when it is idle, and leaves no consumer behind. On the embedded
// server, on an external one and on Kafka.
func TestReadFromAPosition(t *testing.T) {
	for name, start := range map[string]func(testing.TB) testServer{"embedded": newEmbedded, "external": newExternal, "kafka": newKafka} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			b := connect(t, ctx, start(t))
			pos, err := b.Position(ctx)
			if err != nil || pos.Last != 0 || pos.First != 0 {
				t.Fatalf("Position of a new stream: %+v, %v; want 0, 0", pos, err)
			}
			var stock []string
			for i, typ := range []string{contract.TypeStockChanged, contract.TypeOrderPlaced, contract.TypeStockChanged, contract.TypeStockChanged, contract.TypeOrderPlaced} {
				e := newEvent(t, typ, "S", map[string]int{"i": i})
				if typ == contract.TypeStockChanged {
					stock = append(stock, e.ID)
				}
				if err := b.Publish(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			if pos, err = b.Position(ctx); err != nil || pos.First != 1 || pos.Last != 5 {
				t.Fatalf("Position after 5 events: %+v, %v", pos, err)
			}
			if last, err := b.LastOf(ctx, []string{contract.TypeStockChanged}); err != nil || last != 4 {
				t.Errorf("LastOf(stock_changed) = %d, %v; want 4", last, err)
			}
			if last, err := b.LastOf(ctx, []string{contract.TypePaymentRefunded}); err != nil || last != 0 {
				t.Errorf("LastOf(a type never published) = %d, %v; want 0", last, err)
			}

			var got []Stored
			idle := errors.New("idle")
			err = b.Read(ctx, 1, ReadOptions{Types: []string{contract.TypeStockChanged}, BatchSize: 1}, func(ctx context.Context, batch []Stored) error {
				// An empty batch says nothing came for Idle: on a loaded machine that can
				// happen before both events are in, so read on until they are (the test's
				// context bounds the wait), then stop at the next idle.
				if len(batch) == 0 {
					if len(got) < 2 {
						return nil
					}
					return idle
				}
				got = append(got, batch...)
				return nil
			})
			if !errors.Is(err, idle) {
				t.Fatalf("Read: %v, want the callback's error once idle", err)
			}
			if len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 4 || got[0].Event.ID != stock[1] || got[1].Event.ID != stock[2] {
				t.Fatalf("Read after 1: %+v, want the stock events at sequences 3 and 4", got)
			}
			if b.nats == nil {
				return // a Kafka reader leaves no group behind: it has none
			}
			if n, err := b.nats.js.Stream(ctx, EventsStream); err == nil {
				for name := range n.ConsumerNames(ctx).Name() {
					t.Errorf("Read left consumer %s on the server", name)
				}
			}
		})
	}
}
