package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/event"
)

// DeadLetter is a message a consumer gave up on.
type DeadLetter struct {
	// Seq is the dead letter's sequence in the dead-letter stream; Replay takes it.
	Seq uint64
	// Consumer names the consumer that failed.
	Consumer string
	// Event is the event, if its body could be decoded.
	Event event.Event
	// Data is the message body as received.
	Data []byte
	// Error is the last error the handler returned.
	Error string
	// Attempts is how many deliveries the consumer got.
	Attempts int
	// FailedAt is when the consumer gave up.
	FailedAt time.Time
	// Subject is the subject the message was delivered on.
	Subject string
}

// DeadLetters lists the dead-letter stream, oldest first.
func (b *natsBus) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	s, err := b.js.Stream(ctx, DLQStream)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing dead letters: reading %d: %w", seq, err)
		}
		out = append(out, deadLetter(raw))
	}
	return out, nil
}

func deadLetter(raw *jetstream.RawStreamMsg) DeadLetter {
	d := DeadLetter{
		Seq:      raw.Sequence,
		Consumer: raw.Header.Get(HeaderConsumer),
		Data:     raw.Data,
		Error:    raw.Header.Get(HeaderError),
		Subject:  raw.Header.Get(HeaderOrigSubject),
	}
	d.Attempts, _ = strconv.Atoi(raw.Header.Get(HeaderAttempts))
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(HeaderFailedAt))
	if e, err := unmarshalEvent(raw.Data); err == nil {
		d.Event = e
	} else {
		d.Event.ID = raw.Header.Get(HeaderID)
		d.Event.Type = raw.Header.Get(HeaderType)
	}
	return d
}

// Replay delivers the dead letter seq again, to the consumer that gave up on it alone, and
// removes it from the dead-letter stream. Replaying the same dead letter twice within the
// duplicate window delivers it once.
func (b *natsBus) Replay(ctx context.Context, seq uint64) error {
	s, err := b.js.Stream(ctx, DLQStream)
	if err != nil {
		return fmt.Errorf("replaying dead letter %d: %w", seq, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("replaying dead letter %d: %w", seq, err)
	}
	d := deadLetter(raw)
	if !validName(d.Consumer) {
		return fmt.Errorf("replaying dead letter %d: no valid consumer header", seq)
	}
	typ := d.Event.Type
	if checkTokens(typ) != nil {
		typ = "unknown"
	}
	m := nats.NewMsg(ReplayPrefix + d.Consumer + "." + typ)
	m.Data = raw.Data
	for _, h := range []string{HeaderID, HeaderType, HeaderSubject} {
		if v := raw.Header.Get(h); v != "" {
			m.Header.Set(h, v)
		}
	}
	m.Header.Set(HeaderMsgID, fmt.Sprintf("replay-%d-%d", seq, raw.Time.UnixNano()))
	if _, err := b.js.PublishMsg(ctx, m, jetstream.WithExpectStream(EventsStream)); err != nil {
		return fmt.Errorf("replaying dead letter %d: %w", seq, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replaying dead letter %d: removing it: %w", seq, err)
	}
	b.metrics.replayed.Inc()
	return nil
}
