package bus

import (
	"context"
	"fmt"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

// Bus is a client connection to the event bus, NATS JetStream or Kafka, whichever
// events.bus names. Its methods mean the same on both; docs/events.md says where the two
// differ (ordering, retention, replay). It is safe for concurrent use.
type Bus struct {
	d driver
	// nats and kafka are the driver, whichever it is, for tests that look underneath.
	nats  *natsBus
	kafka *kafkaBus
}

// driver is what a bus implementation provides; Bus forwards to it.
type driver interface {
	Publish(ctx context.Context, evs ...event.Event) error
	EnsureConsumer(ctx context.Context, name string, opts ConsumerOptions) error
	Consume(ctx context.Context, name string, h Handler, opts ConsumerOptions) error
	ConsumeBatch(ctx context.Context, name string, h BatchHandler, opts ConsumerOptions) error
	Backlog(ctx context.Context, name string) (uint64, error)
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	Replay(ctx context.Context, seq uint64) error
	Position(ctx context.Context) (Position, error)
	LastOf(ctx context.Context, types []string) (uint64, error)
	Read(ctx context.Context, after uint64, opts ReadOptions, fn func(ctx context.Context, batch []Stored) error) error
	Tail(ctx context.Context, all bool, fn func(e event.Event, subject string) error) error
	Usage(ctx context.Context) ([]Usage, error)
	Close()
}

var (
	_ driver = (*natsBus)(nil)
	_ driver = (*kafkaBus)(nil)
)

// Connect connects to the bus cfg names and makes sure its streams (NATS) or topics (Kafka)
// exist, with the limits and replicas cfg sets. If the bus is not reachable yet it keeps
// trying until ctx is done, so components can start in any order; bound the wait with ctx.
// Once connected, the client reconnects by itself for as long as it lives.
func Connect(ctx context.Context, cfg config.Events, opts Options) (*Bus, error) {
	opts.setDefaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("connecting to bus: %w", err)
	}
	if cfg.BusKind() == config.BusKafka {
		k, err := connectKafka(ctx, cfg, opts, m)
		if err != nil {
			return nil, err
		}
		return &Bus{d: k, kafka: k}, nil
	}
	n, err := connectNATS(ctx, cfg, opts, m)
	if err != nil {
		return nil, err
	}
	return &Bus{d: n, nats: n}, nil
}

// Close closes the connection, and ends the Consume calls running on it with an error.
// Durable consumers (NATS) and consumer groups' offsets (Kafka) stay on the servers.
func (b *Bus) Close() { b.d.Close() }

// Publish publishes evs, in order, and waits until the bus has stored every one of them. On
// error some of evs may have been stored; publishing them all again is safe: NATS drops an
// id it already holds within its duplicate window, and consumers' inboxes drop the rest.
func (b *Bus) Publish(ctx context.Context, evs ...event.Event) error {
	return b.d.Publish(ctx, evs...)
}

// EnsureConsumer makes the durable consumer name exist with opts, without consuming.
// Consume does it too.
func (b *Bus) EnsureConsumer(ctx context.Context, name string, opts ConsumerOptions) error {
	return b.d.EnsureConsumer(ctx, name, opts)
}

// Consume runs the durable consumer name until ctx is done, calling h for every event it
// receives, at least once each. A restarted consumer resumes where it left off: an event is
// done for it once h returned nil (or the event was dead-lettered), never before.
func (b *Bus) Consume(ctx context.Context, name string, h Handler, opts ConsumerOptions) error {
	return b.d.Consume(ctx, name, h, opts)
}

// ConsumeBatch is Consume for a handler that takes several events at once (BatchHandler).
func (b *Bus) ConsumeBatch(ctx context.Context, name string, h BatchHandler, opts ConsumerOptions) error {
	return b.d.ConsumeBatch(ctx, name, h, opts)
}

// Backlog returns how many events the durable consumer name has yet to handle; zero means it
// has handled everything published so far.
func (b *Bus) Backlog(ctx context.Context, name string) (uint64, error) {
	return b.d.Backlog(ctx, name)
}

// DeadLetters lists the dead letters, oldest first.
func (b *Bus) DeadLetters(ctx context.Context) ([]DeadLetter, error) { return b.d.DeadLetters(ctx) }

// Replay delivers the dead letter seq again, to the consumer that gave up on it alone, and
// removes it from the dead letters.
func (b *Bus) Replay(ctx context.Context, seq uint64) error { return b.d.Replay(ctx, seq) }

// Position reads where the events stream stands (see the Position type).
func (b *Bus) Position(ctx context.Context) (Position, error) { return b.d.Position(ctx) }

// LastOf returns the sequence of the newest event of any of types the stream holds, or 0 if
// it holds none.
func (b *Bus) LastOf(ctx context.Context, types []string) (uint64, error) {
	return b.d.LastOf(ctx, types)
}

// Read calls fn with the events stored after sequence after, oldest first, in batches, until
// ctx is done or fn fails; see natsBus.Read for the details, which hold on Kafka too.
func (b *Bus) Read(ctx context.Context, after uint64, opts ReadOptions, fn func(ctx context.Context, batch []Stored) error) error {
	return b.d.Read(ctx, after, opts, fn)
}

// Tail calls fn with every event published from now on (from the oldest kept if all is set)
// until ctx is done or fn returns an error, leaving nothing behind on the servers.
func (b *Bus) Tail(ctx context.Context, all bool, fn func(e event.Event, subject string) error) error {
	return b.d.Tail(ctx, all, fn)
}

// Usage reports what the events and dead-letter streams hold against their limits.
func (b *Bus) Usage(ctx context.Context) ([]Usage, error) { return b.d.Usage(ctx) }
