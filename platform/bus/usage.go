package bus

import (
	"context"
	"fmt"
	"time"
)

// Usage is what a stream holds against its limits.
type Usage struct {
	// Stream is the stream's name, EventsStream or DLQStream.
	Stream string
	// Msgs and Bytes are what the stream holds now.
	Msgs, Bytes uint64
	// MaxBytes and MaxAge are its limits: at either, the oldest messages go.
	MaxBytes int64
	MaxAge   time.Duration
	// Oldest is when the oldest message kept was stored; zero if the stream is empty.
	Oldest time.Time
}

// Usage reports what the events and dead-letter streams hold against their limits.
func (b *natsBus) Usage(ctx context.Context) ([]Usage, error) {
	var out []Usage
	for _, name := range []string{EventsStream, DLQStream} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", name, err)
		}
		u := Usage{
			Stream: name, Msgs: info.State.Msgs, Bytes: info.State.Bytes,
			MaxBytes: info.Config.MaxBytes, MaxAge: info.Config.MaxAge,
		}
		if info.State.Msgs > 0 {
			u.Oldest = info.State.FirstTime
		}
		out = append(out, u)
	}
	return out, nil
}
