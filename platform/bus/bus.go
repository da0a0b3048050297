// Package bus carries Ficus events over NATS JetStream or Kafka.
//
// Every event lives in one stream, FICUS_EVENTS, on the subject "ficus.events." followed by its
// type ("ficus.events.shop.inventory.stock_changed.v1"), with its CloudEvents envelope as the
// JSON body and its id as the Nats-Msg-Id, so JetStream drops a re-published duplicate within
// its duplicate window. Consumers are durable pull consumers that this package creates up
// front and never deletes; a message a consumer cannot handle is retried with backoff and, after
// its last attempt, parked in a separate stream, FICUS_DLQ, from which it can be listed and
// replayed to that consumer alone. Both streams are bounded in age and size (events.stream
// and events.dead_letters in config.yaml); at either limit the oldest messages go first.
//
// The same code serves an embedded server (ServeEmbedded, events.bus: embedded) and an external
// server or cluster (events.bus: nats://…, streams replicated events.replicas ways).
//
// The same Bus also runs on Kafka (events.bus: kafka://…; kafka.go): one topic per stream,
// records keyed by aggregate id, a consumer group per durable consumer whose offsets are
// committed only after the events were handled or dead-lettered. docs/events.md compares the
// two.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

// Stream and subject names.
const (
	// EventsStream holds every published event and every replayed dead letter.
	EventsStream = "FICUS_EVENTS"
	// DLQStream holds dead letters. It is a stream of its own so that parking a message never
	// collides with the events stream's duplicate detection.
	DLQStream = "FICUS_DLQ"
	// EventsPrefix starts the subject of every event; the event type follows.
	EventsPrefix = "ficus.events."
	// ReplayPrefix starts the subject of a replayed dead letter; the consumer name and the
	// event type follow, so a replay reaches only the consumer that failed.
	ReplayPrefix = "ficus.replay."
	// DLQPrefix starts the subject of a dead letter; the consumer name and the event type
	// follow.
	DLQPrefix = "ficus.dlq."
)

// Header names set on messages.
const (
	// HeaderMsgID is JetStream's deduplication header; it carries the event id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderType, HeaderSubject and HeaderID repeat envelope fields (CloudEvents binary-mode
	// names) so tools can filter without decoding bodies.
	HeaderType    = "ce-type"
	HeaderSubject = "ce-subject"
	HeaderID      = "ce-id"
	// HeaderError, HeaderConsumer, HeaderAttempts, HeaderFailedAt and HeaderOrigSubject
	// describe a dead letter.
	HeaderError       = "Ficus-Error"
	HeaderConsumer    = "Ficus-Consumer"
	HeaderAttempts    = "Ficus-Attempts"
	HeaderFailedAt    = "Ficus-Failed-At"
	HeaderOrigSubject = "Ficus-Original-Subject"
	HeaderOrigSeq     = "Ficus-Original-Seq"
)

// Options tune Connect. The zero value is ready to use.
type Options struct {
	// Name is the client connection name shown by the server. Default "ficus".
	Name string
	// Logger receives connection events. Default: discarded.
	Logger *slog.Logger
	// Registerer receives the bus metrics (see docs/events.md). Default: none registered.
	Registerer prometheus.Registerer
	// ReconnectWait is the pause between reconnect attempts. Default 250ms.
	ReconnectWait time.Duration
	// PublishTimeout bounds waiting for the acknowledgement of one published batch.
	// Default 10s.
	PublishTimeout time.Duration
	// MaxPendingPublishes bounds asynchronous publishes awaiting acknowledgement. Default 4096.
	MaxPendingPublishes int
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "ficus"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.MaxPendingPublishes == 0 {
		o.MaxPendingPublishes = 4096
	}
}

// natsBus is the bus on NATS JetStream, embedded or external.
type natsBus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	opts    Options
	metrics *metrics
}

// URL returns the NATS URL(s) cfg names: the embedded server's listen address, or cfg.Bus.
func URL(cfg config.Events) string {
	if cfg.Bus == "" || cfg.Bus == "embedded" {
		listen := cfg.Embedded.Listen
		if listen == "" {
			listen = "127.0.0.1:4222"
		}
		return "nats://" + listen
	}
	return cfg.Bus
}

// connectNATS connects to the NATS server or cluster cfg names (Connect).
func connectNATS(ctx context.Context, cfg config.Events, opts Options, m *metrics) (*natsBus, error) {
	url := URL(cfg)
	log := opts.Logger
	nc, err := nats.Connect(url,
		nats.Name(opts.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.ReconnectJitter(opts.ReconnectWait/4, opts.ReconnectWait/4),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("bus reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to bus %s: %w", config.Redact(url), err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.MaxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(opts.PublishTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connecting to bus: %w", err)
	}
	b := &natsBus{nc: nc, js: js, opts: opts, metrics: m}
	wait := 50 * time.Millisecond
	for {
		err := ensureStreams(ctx, js, cfg)
		if err == nil {
			return b, nil
		}
		log.Debug("bus not ready", "err", err)
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("connecting to bus %s: %w (last error: %v)", config.Redact(url), ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Close closes the connection. Durable consumers stay on the server.
func (b *natsBus) Close() { b.nc.Close() }

// ensureStreams creates the events and dead-letter streams, or updates them to the limits cfg
// sets (events.stream, events.dead_letters; unset limits take their defaults) and the number
// of copies it asks for (events.replicas; consumers take their stream's). Every process
// that connects applies the limits of its config.yaml, so they must all agree. Either limit
// reached removes the oldest messages (DiscardOld): publishing never fails for lack of room.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg config.Events) error {
	for _, c := range streamConfigs(cfg) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateOrUpdateStream(cctx, c)
		cancel()
		if err != nil {
			return fmt.Errorf("creating stream %s: %w", c.Name, err)
		}
	}
	return nil
}

// streamConfigs returns the configuration of the events and dead-letter streams.
func streamConfigs(cfg config.Events) []jetstream.StreamConfig {
	events, dlq := cfg.Stream, cfg.DeadLetters
	events.EventsStreamDefaults()
	dlq.DeadLettersDefaults()
	replicas := cfg.StreamReplicas()
	return []jetstream.StreamConfig{
		{
			Name:        EventsStream,
			Description: "Ficus events (CloudEvents JSON), one subject per event type",
			Subjects:    []string{EventsPrefix + ">", ReplayPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      events.MaxAge.D(),
			MaxBytes:    int64(events.MaxBytes),
			Duplicates:  min(config.DuplicateWindow, events.MaxAge.D()),
			Replicas:    replicas,
		},
		{
			Name:        DLQStream,
			Description: "Ficus dead letters: events a consumer gave up on, with the error in headers",
			Subjects:    []string{DLQPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      dlq.MaxAge.D(),
			MaxBytes:    int64(dlq.MaxBytes),
			Duplicates:  min(config.DuplicateWindow, dlq.MaxAge.D()),
			Replicas:    replicas,
		},
	}
}

// Subject returns the subject events of type typ are published on.
func Subject(typ string) (string, error) {
	if err := checkTokens(typ); err != nil {
		return "", fmt.Errorf("event type %q: %w", typ, err)
	}
	return EventsPrefix + typ, nil
}

// checkTokens checks that s is a non-empty dotted name usable inside a subject.
func checkTokens(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return errors.New("empty token")
		}
		if strings.ContainsAny(tok, " \t\r\n*>") {
			return errors.New("contains whitespace, * or >")
		}
	}
	return nil
}

// Publish publishes evs, in order, and waits until JetStream has stored every one of them (or
// dropped it as a duplicate of an id it already holds). The publishes are pipelined: one round
// trip for the whole batch. On error some of evs may have been stored; publishing them all
// again is safe.
func (b *natsBus) Publish(ctx context.Context, evs ...event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if !b.nc.IsConnected() {
		// Fail fast rather than fill the client's reconnect buffer with batches the caller
		// will publish again anyway.
		b.metrics.publishErrors.Inc()
		return fmt.Errorf("publishing %d events: %w", len(evs), nats.ErrDisconnected)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var pubErr error
	for _, e := range evs {
		msg, err := eventMsg(e)
		if err != nil {
			pubErr = err
			break
		}
		f, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(EventsStream))
		if err != nil {
			pubErr = fmt.Errorf("publishing event %s: %w", e.ID, err)
			break
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(b.opts.PublishTimeout)
	defer timeout.Stop()
	stored := 0
	for _, f := range futures {
		select {
		case <-f.Ok():
			stored++
		case err := <-f.Err():
			if pubErr == nil {
				pubErr = fmt.Errorf("publishing event %s: %w", f.Msg().Header.Get(HeaderMsgID), err)
			}
		case <-timeout.C:
			if pubErr == nil {
				pubErr = fmt.Errorf("publishing events: no acknowledgement within %s", b.opts.PublishTimeout)
			}
		case <-ctx.Done():
			if pubErr == nil {
				pubErr = fmt.Errorf("publishing events: %w", ctx.Err())
			}
		}
		if pubErr != nil {
			break
		}
	}
	b.metrics.published.Add(float64(stored))
	if pubErr != nil {
		b.metrics.publishErrors.Inc()
		return pubErr
	}
	return nil
}

// eventMsg encodes e as the message that carries it.
func eventMsg(e event.Event) (*nats.Msg, error) {
	subj, err := Subject(e.Type)
	if err != nil {
		return nil, fmt.Errorf("publishing event %s: %w", e.ID, err)
	}
	if e.ID == "" {
		return nil, fmt.Errorf("publishing %s event: empty id", e.Type)
	}
	body, err := marshalEvent(e)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(subj)
	msg.Data = body
	msg.Header.Set(HeaderMsgID, e.ID)
	msg.Header.Set(HeaderID, e.ID)
	msg.Header.Set(HeaderType, e.Type)
	if e.Subject != "" {
		msg.Header.Set(HeaderSubject, e.Subject)
	}
	return msg, nil
}
