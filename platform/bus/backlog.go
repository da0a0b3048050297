package bus

import (
	"context"
	"fmt"
	"time"
)

// Backlog returns how many events the durable consumer name has yet to handle: those the
// stream holds that were not delivered to it yet, and those delivered but not acknowledged
// (being handled, or waiting for a retry). Zero means the consumer has handled everything
// published so far. It is one request to the server, bounded by 5s and ctx.
func (b *natsBus) Backlog(ctx context.Context, name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, EventsStream, name)
	if err != nil {
		return 0, fmt.Errorf("measuring the backlog of consumer %s: %w", name, err)
	}
	info := c.CachedInfo()
	return info.NumPending + uint64(max(info.NumAckPending, 0)), nil
}
