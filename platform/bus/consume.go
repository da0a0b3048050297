package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/event"
)

// Handler handles one event. Returning nil acknowledges the event; an error has it delivered
// again after a backoff, and parked in the dead-letter stream after the consumer's last attempt
// (at once if the error is Permanent). Delivery is at least once: make the effect idempotent,
// for example with inbox.Handle.
type Handler func(ctx context.Context, e event.Event) error

// ConsumerOptions tune a durable consumer. The zero value is ready to use.
type ConsumerOptions struct {
	// Types are the event types the consumer receives. Default: every type.
	Types []string
	// MaxAttempts is how many deliveries a failing message gets before it is dead-lettered.
	// Default 5.
	MaxAttempts int
	// Backoff returns the pause before delivery attempt+1 after attempt failed (attempt
	// counts from 1). Default: 1s doubling per attempt, at most 1m, with ±20% jitter.
	Backoff func(attempt int) time.Duration
	// AckWait is how long the server waits for an acknowledgement before it delivers a
	// message again; it also bounds one handler call. Default 30s.
	AckWait time.Duration
	// Concurrency is how many handler calls run at once. With 1, events are handled in stream
	// order except for retried ones. Default 1.
	Concurrency int
	// MaxAckPending bounds the messages delivered and not yet acknowledged. Default 1000.
	MaxAckPending int
	// BatchSize is the most events ConsumeBatch hands its handler at once. Default 100.
	BatchSize int
	// Logger receives handler failures and dead letters. Default: discarded.
	Logger *slog.Logger
}

func (o *ConsumerOptions) setDefaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DefaultBackoff waits 1s after the first failed attempt, doubling per attempt up to 1m, with
// ±20% jitter so retries of many messages spread out.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Second << min(max(attempt-1, 0), 6)
	d = min(d, time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// permanent marks an error retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one retrying cannot fix: the message is dead-lettered at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// validName reports whether name can name a durable consumer and a subject token.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// EnsureConsumer creates the durable consumer name, or updates it to opts, without consuming.
// Consume does it too; call it on its own to make a consumer exist, and so start retaining its
// events, before the first Consume.
func (b *natsBus) EnsureConsumer(ctx context.Context, name string, opts ConsumerOptions) error {
	_, err := b.ensureConsumer(ctx, name, opts)
	return err
}

func (b *natsBus) ensureConsumer(ctx context.Context, name string, opts ConsumerOptions) (jetstream.Consumer, error) {
	opts.setDefaults()
	if !validName(name) {
		return nil, fmt.Errorf("creating consumer %q: name must be letters, digits, - or _", name)
	}
	filters := []string{ReplayPrefix + name + ".>"}
	if len(opts.Types) == 0 {
		filters = append(filters, EventsPrefix+">")
	}
	for _, t := range opts.Types {
		s, err := Subject(t)
		if err != nil {
			return nil, fmt.Errorf("creating consumer %s: %w", name, err)
		}
		filters = append(filters, s)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := b.js.CreateOrUpdateConsumer(cctx, EventsStream, jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "Ficus consumer " + name,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        opts.AckWait,
		// Unlimited deliveries: the consumer, not the server, decides when to give up, so the
		// message is parked in the dead-letter stream rather than silently dropped.
		MaxDeliver:    -1,
		MaxAckPending: opts.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", name, err)
	}
	return c, nil
}

// Consume runs the durable consumer name until ctx is done, calling h for every event it
// receives. It creates the consumer first if needed; it never deletes it, so a restarted
// consumer resumes where it left off. Messages received but not handled when ctx ends are
// handed back to the server for immediate redelivery.
func (b *natsBus) Consume(ctx context.Context, name string, h Handler, opts ConsumerOptions) error {
	return b.consume(ctx, name, &consumer{h: h}, opts)
}

// BatchHandler handles several events together, typically in one transaction (see
// inbox.HandleBatch). It must apply all of them or none: on error the consumer hands each
// event of the batch to it again, alone, so a failing event is retried and dead-lettered by
// itself and the others go through.
type BatchHandler func(ctx context.Context, evs []event.Event) error

// ConsumeBatch is Consume for a handler that takes the messages already waiting, up to
// opts.BatchSize, at once. It trades nothing in ordering or delivery guarantees for far fewer
// transactions under load; when traffic is light, batches hold one event.
func (b *natsBus) ConsumeBatch(ctx context.Context, name string, h BatchHandler, opts ConsumerOptions) error {
	single := func(ctx context.Context, e event.Event) error { return h(ctx, []event.Event{e}) }
	return b.consume(ctx, name, &consumer{h: single, batch: h}, opts)
}

func (b *natsBus) consume(ctx context.Context, name string, c *consumer, opts ConsumerOptions) error {
	opts.setDefaults()
	cons, err := b.ensureConsumer(ctx, name, opts)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(min(opts.MaxAckPending, 500)))
	if err != nil {
		return fmt.Errorf("consuming %s: %w", name, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()

	c.bus, c.name, c.opts, c.log = b, name, opts, opts.Logger.With("consumer", name)
	buffer := 0
	if c.batch != nil {
		buffer = opts.BatchSize
	}
	work := make(chan jetstream.Msg, buffer)
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(func() {
			for msg := range work {
				if c.batch == nil {
					c.process(ctx, msg)
					continue
				}
				batch := []jetstream.Msg{msg}
			fill:
				for len(batch) < opts.BatchSize {
					select {
					case m, ok := <-work:
						if !ok {
							break fill
						}
						batch = append(batch, m)
					default:
						break fill
					}
				}
				c.processBatch(ctx, batch)
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("consuming %s: %w", name, err)
			}
			if b.nc.IsClosed() {
				return fmt.Errorf("consuming %s: %w", name, nats.ErrConnectionClosed)
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("consuming %s: %w", name, err)
			}
			c.log.Debug("waiting for messages", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if ctx.Err() != nil {
			c.settle(msg, msg.Nak())
			continue
		}
		select {
		case work <- msg:
		case <-ctx.Done():
			c.settle(msg, msg.Nak())
		}
	}
}

// consumer handles the messages of one Consume call.
type consumer struct {
	bus   *natsBus
	name  string
	h     Handler
	batch BatchHandler
	opts  ConsumerOptions
	log   *slog.Logger
}

// processBatch hands msgs to the batch handler at once, and one by one if that fails.
func (c *consumer) processBatch(ctx context.Context, msgs []jetstream.Msg) {
	if len(msgs) == 1 {
		c.process(ctx, msgs[0])
		return
	}
	evs := make([]event.Event, 0, len(msgs))
	ok := make([]jetstream.Msg, 0, len(msgs))
	for _, msg := range msgs {
		e, err := unmarshalEvent(msg.Data())
		if err != nil {
			c.process(ctx, msg) // Dead-letters it.
			continue
		}
		evs = append(evs, e)
		ok = append(ok, msg)
	}
	m := c.bus.metrics
	hctx, cancel := context.WithTimeout(ctx, c.opts.AckWait)
	err := c.callBatch(hctx, evs)
	cancel()
	if err == nil {
		now := time.Now()
		for i, msg := range ok {
			if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
				m.redelivered.WithLabelValues(c.name).Inc()
			}
			c.acked(msg, evs[i], now)
		}
		return
	}
	if ctx.Err() != nil {
		for _, msg := range ok {
			c.settle(msg, msg.Nak())
		}
		return
	}
	c.log.Debug("batch failed, handling its events one by one", "events", len(evs), "err", err)
	for _, msg := range ok {
		c.process(ctx, msg)
	}
}

// callBatch runs the batch handler, turning a panic into an error.
func (c *consumer) callBatch(ctx context.Context, evs []event.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return c.batch(ctx, evs)
}

func (c *consumer) process(ctx context.Context, msg jetstream.Msg) {
	m := c.bus.metrics
	attempt := 1
	var streamSeq uint64
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
		streamSeq = md.Sequence.Stream
	}
	if attempt > 1 {
		m.redelivered.WithLabelValues(c.name).Inc()
	}
	e, err := unmarshalEvent(msg.Data())
	if err != nil {
		c.deadLetter(ctx, msg, streamSeq, attempt, "", err)
		return
	}
	hctx, cancel := context.WithTimeout(ctx, c.opts.AckWait)
	err = c.call(hctx, e)
	cancel()
	if err == nil {
		c.acked(msg, e, time.Now())
		return
	}
	if ctx.Err() != nil {
		// Shutting down: not the message's fault, and not an attempt worth counting.
		c.settle(msg, msg.Nak())
		return
	}
	m.failed.WithLabelValues(c.name).Inc()
	var p permanent
	if errors.As(err, &p) || attempt >= c.opts.MaxAttempts {
		c.deadLetter(ctx, msg, streamSeq, attempt, e.Type, err)
		return
	}
	delay := c.opts.Backoff(attempt)
	c.log.Warn("handler failed, will retry", "event", e.ID, "type", e.Type, "attempt", attempt, "retry_in", delay, "err", err)
	c.settle(msg, msg.NakWithDelay(delay))
}

// acked acknowledges msg, whose event e was handled, and counts it consumed only if the
// acknowledgement could be sent. One that could not (the connection closed under it) is
// counted apart: the server delivers the event again after AckWait, and the inbox drops it.
func (c *consumer) acked(msg jetstream.Msg, e event.Event, now time.Time) {
	if !c.settle(msg, msg.Ack()) {
		return
	}
	m := c.bus.metrics
	m.consumed.WithLabelValues(c.name).Inc()
	m.lag.WithLabelValues(c.name).Observe(now.Sub(e.Time).Seconds())
}

// settle records the outcome of an ack, nak or term of msg and reports whether it was sent. A
// failure is only counted and logged at debug level: it comes in bursts when a connection
// drops, and the message is delivered again whatever the failure.
func (c *consumer) settle(msg jetstream.Msg, err error) bool {
	if err == nil {
		return true
	}
	c.bus.metrics.ackErrors.WithLabelValues(c.name).Inc()
	c.log.Debug("acknowledgement not sent; the message will be delivered again", "subject", msg.Subject(), "err", err)
	return false
}

// call runs the handler, turning a panic into an error so one bad message cannot take the
// consumer down.
func (c *consumer) call(ctx context.Context, e event.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return c.h(ctx, e)
}

// deadLetter parks msg in the dead-letter stream with err, then terminates it. If parking
// fails the message is retried later instead: it is never dropped.
func (c *consumer) deadLetter(ctx context.Context, msg jetstream.Msg, streamSeq uint64, attempt int, typ string, cause error) {
	if typ == "" {
		typ = msg.Headers().Get(HeaderType)
	}
	if checkTokens(typ) != nil {
		typ = "unknown"
	}
	dl := nats.NewMsg(DLQPrefix + c.name + "." + typ)
	dl.Data = msg.Data()
	for _, h := range []string{HeaderID, HeaderType, HeaderSubject} {
		if v := msg.Headers().Get(h); v != "" {
			dl.Header.Set(h, v)
		}
	}
	dl.Header.Set(HeaderError, headerValue(cause.Error()))
	dl.Header.Set(HeaderConsumer, c.name)
	dl.Header.Set(HeaderAttempts, strconv.Itoa(attempt))
	dl.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	dl.Header.Set(HeaderOrigSubject, msg.Subject())
	dl.Header.Set(HeaderOrigSeq, strconv.FormatUint(streamSeq, 10))
	// One dead letter per consumer and stream message, even if the message is delivered again
	// before its termination reaches the server.
	dl.Header.Set(HeaderMsgID, fmt.Sprintf("dlq-%s-%d", c.name, streamSeq))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_, err := c.bus.js.PublishMsg(pctx, dl, jetstream.WithExpectStream(DLQStream))
	cancel()
	if err != nil {
		c.log.Error("dead-lettering failed, will retry", "subject", msg.Subject(), "err", err)
		c.settle(msg, msg.NakWithDelay(c.opts.Backoff(attempt)))
		return
	}
	if !c.settle(msg, msg.TermWithReason("dead-lettered")) {
		// Parked, but the server will deliver the message again; parking it again then is
		// deduplicated (its Nats-Msg-Id), and counting it waits for a termination that lands.
		return
	}
	c.bus.metrics.deadLettered.WithLabelValues(c.name).Inc()
	c.log.Error("event dead-lettered", "subject", msg.Subject(), "attempts", attempt, "err", cause)
}

// headerValue makes s fit in one header value.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 2048 {
		s = s[:2048] + "…"
	}
	return s
}
