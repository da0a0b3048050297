package bus

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

// TestBacklogCountsWhatAConsumerHasYetToHandle: Backlog counts the events of a consumer's
// types not delivered yet, and those delivered but not acknowledged, and only those; it
// reaches 0 once the consumer has handled everything. The server is StartEmbedded's.
func TestBacklogCountsWhatAConsumerHasYetToHandle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg, stop, err := StartEmbedded(ctx, config.Events{Embedded: config.Embedded{
		Listen: "127.0.0.1:0", Store: filepath.Join(t.TempDir(), "nats")}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if cfg.Embedded.Listen == "127.0.0.1:0" {
		t.Fatalf("StartEmbedded returned the listen address it was given, not the one it took")
	}
	b := connectTo(t, ctx, cfg, Options{Name: t.Name()})

	if _, err := b.Backlog(ctx, "nobody"); err == nil {
		t.Error("the backlog of a consumer that does not exist was measured")
	}
	const counted, other = "test.backlog.counted.v1", "test.backlog.other.v1"
	opts := ConsumerOptions{Types: []string{counted}}
	if err := b.EnsureConsumer(ctx, "counter", opts); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Backlog(ctx, "counter"); err != nil || n != 0 {
		t.Fatalf("backlog of a new consumer = %d, %v; want 0", n, err)
	}
	var evs []event.Event
	for i := range 5 {
		typ := counted
		if i >= 3 {
			typ = other
		}
		evs = append(evs, newEvent(t, typ, "s", map[string]int{"i": i}))
	}
	if err := b.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Backlog(ctx, "counter"); err != nil || n != 3 {
		t.Fatalf("backlog after 3 events of its type and 2 of another = %d, %v; want 3", n, err)
	}

	// The first event is delivered and held: it still counts, as not acknowledged.
	holding, release := make(chan struct{}), make(chan struct{})
	first := true
	background(t, ctx, "consumer", func(ctx context.Context) error {
		return b.Consume(ctx, "counter", func(ctx context.Context, e event.Event) error {
			if first {
				first = false
				close(holding)
				<-release
			}
			return nil
		}, opts)
	})
	select {
	case <-holding:
	case <-ctx.Done():
		t.Fatal("the consumer was never handed the first event")
	}
	if n, err := b.Backlog(ctx, "counter"); err != nil || n != 3 {
		t.Errorf("backlog while the first event is being handled = %d, %v; want 3", n, err)
	}
	close(release)
	waitFor(t, settle, "the backlog to reach 0", func() bool {
		n, err := b.Backlog(ctx, "counter")
		return err == nil && n == 0
	})
}
