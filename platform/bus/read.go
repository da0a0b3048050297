package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/event"
)

// Position is where the events stream stands: the sequence numbers of the oldest and of the
// newest event it holds. A stream that never held an event stands at 0, 0; one that has
// dropped everything it held (its limits) at Last+1, Last.
type Position struct {
	First, Last uint64
}

// Position reads where the events stream stands. A reader that records Last before it takes
// a snapshot of some state, and later reads the events after it (Read), misses none of the
// changes that happened after the snapshot began.
func (b *natsBus) Position(ctx context.Context) (Position, error) {
	s, err := b.js.Stream(ctx, EventsStream)
	if err != nil {
		return Position{}, fmt.Errorf("reading stream %s: %w", EventsStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return Position{}, fmt.Errorf("reading stream %s: %w", EventsStream, err)
	}
	return Position{First: info.State.FirstSeq, Last: info.State.LastSeq}, nil
}

// LastOf returns the stream sequence of the newest event of any of types the stream holds, or
// 0 if it holds none. A reader that has handled every event up to that sequence has seen all
// the events of those types published so far.
func (b *natsBus) LastOf(ctx context.Context, types []string) (uint64, error) {
	s, err := b.js.Stream(ctx, EventsStream)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", EventsStream, err)
	}
	var last uint64
	for _, t := range types {
		subj, err := Subject(t)
		if err != nil {
			return 0, err
		}
		msg, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading the last %s event: %w", t, err)
		}
		last = max(last, msg.Sequence)
	}
	return last, nil
}

// Stored is an event as the stream holds it.
type Stored struct {
	// Seq is the event's sequence number in the stream.
	Seq uint64
	// Event is the decoded envelope; it is zero when Err is set.
	Event event.Event
	// Err says why the message is not an event envelope.
	Err error
}

// ReadOptions tune Read. The zero value is ready to use.
type ReadOptions struct {
	// Types are the event types to read. Default: every type.
	Types []string
	// BatchSize is the most events handed to the callback at once. Default 500.
	BatchSize int
	// Idle is how long Read waits for an event before it calls the callback with no events,
	// so that the caller can look around (am I caught up?) while nothing arrives. Default
	// 250ms.
	Idle time.Duration
	// Linger is how long Read waits for more events to fill a batch it has begun. Default
	// 2ms: under load batches fill at once, and a lone event waits no longer than this.
	Linger time.Duration
}

func (o *ReadOptions) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Idle <= 0 {
		o.Idle = 250 * time.Millisecond
	}
	if o.Linger <= 0 {
		o.Linger = 2 * time.Millisecond
	}
}

// Read calls fn with the events stored after sequence after, oldest first, in batches, until
// ctx is done (it returns nil) or fn returns an error (it returns that error). After Idle
// without an event it calls fn with an empty batch. fn must not keep batch: Read reuses it.
//
// Unlike Consume, Read acknowledges nothing and leaves nothing on the server (an ordered,
// ephemeral consumer, deleted when Read returns, or by the server a minute after a reader
// died): the caller keeps its own position, typically in the same transaction
// as the effect of the events, and passes it as after when it starts again. It is for
// readers that replay from a position of their own, such as ficus migrate's sync. Events
// the stream no longer holds (older than its limits) are not delivered: compare after with
// Position().First before reading.
func (b *natsBus) Read(ctx context.Context, after uint64, opts ReadOptions, fn func(ctx context.Context, batch []Stored) error) error {
	opts.setDefaults()
	subjects := make([]string, 0, len(opts.Types))
	for _, t := range opts.Types {
		s, err := Subject(t)
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		subjects = append(subjects, s)
	}
	if len(subjects) == 0 {
		subjects = []string{EventsPrefix + ">"}
	}
	cons, err := b.js.OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
		// A reader killed before it could delete its consumer leaves it for this long.
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("reading events after %d: %w", after, err)
	}
	defer func() {
		// The server would drop the consumer after InactiveThreshold; do it now.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = b.js.DeleteConsumer(dctx, EventsStream, info.Name)
			cancel()
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(opts.BatchSize))
	if err != nil {
		return fmt.Errorf("reading events after %d: %w", after, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	batch := make([]Stored, 0, opts.BatchSize)
	flush := func() error {
		if err := fn(ctx, batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for {
		wait := opts.Idle
		if len(batch) > 0 {
			wait = opts.Linger
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrTimeout):
			// Nothing more now: hand over what there is, or tell the caller it is idle.
			if err := flush(); err != nil {
				return err
			}
			continue
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return fmt.Errorf("reading events: %w", err)
		default:
			// The ordered consumer recreates itself after a reconnect; wait a moment.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s := Stored{}
		if md, err := msg.Metadata(); err == nil {
			s.Seq = md.Sequence.Stream
		}
		s.Event, s.Err = unmarshalEvent(msg.Data())
		batch = append(batch, s)
		if len(batch) >= opts.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
