package bench

import (
	"context"
	"flag"
	"testing"
	"time"
)

var (
	benchEvents = flag.Int("bench.events", 10000, "events per BenchmarkEndToEnd run")
	benchRate   = flag.Int("bench.rate", 5000, "producer pace for the lag measurement, events/s")
	benchProd   = flag.Int("bench.producers", 4, "producer goroutines, one transaction per change")
)

// TestEventsSmall keeps the benchmark working: a short, paced run must apply every event.
func TestEventsSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Events(ctx, EventsOptions{Dir: t.TempDir(), Events: 1000, Rate: 2000})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
}

// TestEventsOnKafka runs the pipeline on the Kafka bus the load report measures (a kfake
// cluster): every event committed reaches the consumer's database once.
func TestEventsOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, stop, err := benchBus("kafka")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	r, err := Events(ctx, EventsOptions{Dir: t.TempDir(), Events: 500, Bus: url})
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 500 || r.Throughput <= 0 {
		t.Errorf("events on kafka: %+v, want 500 applied", r)
	}
}

// BenchmarkEndToEnd measures throughput and lag with the producers flat out, lag with them
// paced at -bench.rate, and the relay-to-consumer throughput draining a committed backlog.
// Run it with
//
//	go test -run XXX -bench BenchmarkEndToEnd -benchtime 1x ./cmd/ficus/internal/bench/
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []struct {
		name    string
		rate    int
		backlog bool
	}{{"flat-out", 0, false}, {"paced", *benchRate, false}, {"backlog-drain", 0, true}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				r, err := Events(context.Background(), EventsOptions{Dir: b.TempDir(), Events: *benchEvents, Rate: mode.rate, Backlog: mode.backlog, Producers: *benchProd})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.Throughput, "events/s")
				b.ReportMetric(float64(r.P50.Microseconds())/1000, "p50-lag-ms")
				b.ReportMetric(float64(r.P99.Microseconds())/1000, "p99-lag-ms")
				b.Log(r)
			}
		})
	}
}
