package bus

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/event"
)

// BenchmarkBus measures publish→consume throughput per bus: b.N events published in
// batches of 100 (as the outbox relay does) while a durable consumer takes them in batches
// (as the shop's consumers do); the clock stops once the consumer has handled the last one.
// It reports events/s. Run it with
//
//	go test -run '^$' -bench BenchmarkBus -benchtime 20000x ./platform/bus/
//
// The cluster sub-benchmark starts three nats-server processes first (a few seconds, not
// timed); kafka runs franz-go's kfake in process, which measures the client and the protocol,
// not a Kafka broker's disk.
func BenchmarkBus(b *testing.B) {
	for _, bus := range []struct {
		name  string
		start func(testing.TB) testServer
	}{
		{"embedded", newEmbedded},
		{"cluster", func(t testing.TB) testServer { return startCluster(t).fresh(t) }},
		{"kafka", newKafka},
	} {
		b.Run(bus.name, func(b *testing.B) { benchPipeline(b, bus.start(b)) })
	}
}

func benchPipeline(b *testing.B, srv testServer) {
	t := b
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := connect(t, ctx, srv)
	sub := connect(t, ctx, srv)
	const typ = "bench.flow.v1"
	var handled atomic.Int64
	done := make(chan struct{})
	go func() {
		_ = sub.ConsumeBatch(ctx, "bench", func(_ context.Context, evs []event.Event) error {
			handled.Add(int64(len(evs)))
			return nil
		}, ConsumerOptions{Types: []string{typ}, BatchSize: 500, MaxAckPending: 5000})
		close(done)
	}()
	evs := make([]event.Event, b.N)
	for i := range evs {
		evs[i] = newEvent(t, typ, fmt.Sprint("agg-", i%64), map[string]int{"i": i})
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(evs); i += 100 {
		if err := pub.Publish(ctx, evs[i:min(i+100, len(evs))]...); err != nil {
			b.Fatal(err)
		}
	}
	for handled.Load() < int64(b.N) {
		time.Sleep(time.Millisecond) // polling the counter; the consumer runs meanwhile
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	cancel()
	<-done
}
