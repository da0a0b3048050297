package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// EventsOptions shape a run of Events. Only Dir is required.
type EventsOptions struct {
	// Dir holds the two SQLite databases and the JetStream store; use an empty temporary
	// directory. Required.
	Dir string
	// Events is how many state changes are committed. Default 10,000.
	Events int
	// Rate paces the producers at this many events per second; 0 runs them flat out, which
	// measures throughput (lag then includes queueing).
	Rate int
	// Producers is how many goroutines commit changes. Default 2.
	Producers int
	// SKUs is how many rows the changes spread over. Default 50.
	SKUs int
	// ConsumerConcurrency is the consumer's handler concurrency. Default 1.
	ConsumerConcurrency int
	// Backlog commits every change first and only then starts the relay and the consumer:
	// throughput is then the pipeline's own, draining a backlog, and lag means little.
	Backlog bool
	// SingleConsumer applies one event per transaction (Consume and inbox.Handle) instead of
	// batches (ConsumeBatch and inbox.HandleBatch).
	SingleConsumer bool
	// Logger receives progress. Default: discarded.
	Logger *slog.Logger
	// Bus is an external bus to run on, as events.bus names one (nats://… or kafka://…);
	// empty runs an embedded NATS JetStream server in Dir.
	Bus string
}

// EventsResult is what a run of Events measured. Lag is from an event's creation, just before its transaction
// commits, to the commit of its effect in the consumer's database.
type EventsResult struct {
	Events     int
	Elapsed    time.Duration
	Throughput float64 // events applied per second, from the first commit to the last effect
	ProduceFor time.Duration
	P50, P99   time.Duration
	Max        time.Duration
	Redelivery int64 // handler calls beyond one per event
	// CPUPerEvent is the process's CPU time (user and system, embedded bus included) per
	// event over the measured span: a figure other load on the machine barely changes.
	CPUPerEvent time.Duration
}

// String formats r for a report.
func (r EventsResult) String() string {
	return fmt.Sprintf("%d events in %s: %.0f events/s end to end (producers done in %s); lag p50 %s, p99 %s, max %s; CPU %s/event",
		r.Events, r.Elapsed.Round(time.Millisecond), r.Throughput, r.ProduceFor.Round(time.Millisecond),
		r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Max.Round(100*time.Microsecond),
		r.CPUPerEvent.Round(time.Microsecond))
}

func (o *EventsOptions) setDefaults() {
	if o.Events <= 0 {
		o.Events = 10000
	}
	if o.Producers <= 0 {
		o.Producers = 2
	}
	if o.SKUs <= 0 {
		o.SKUs = 50
	}
	if o.ConsumerConcurrency <= 0 {
		o.ConsumerConcurrency = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Events measures the event pipeline end to end, once: a state change committed in SQLite
// together with its event (outbox.Record), the relay publishing it to an embedded JetStream
// bus, and a consumer applying it through its inbox in another SQLite database. It reports
// throughput and lag.
func Events(ctx context.Context, opts EventsOptions) (EventsResult, error) {
	opts.setDefaults()
	if opts.Dir == "" {
		return EventsResult{}, errors.New("benchmarking events: Options.Dir is required")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The bus.
	cfg := config.Events{Bus: "embedded", Embedded: config.Embedded{Listen: "127.0.0.1:0", Store: filepath.Join(opts.Dir, "nats")}}
	if opts.Bus != "" {
		cfg.Bus = opts.Bus
	} else {
		ready := make(chan string, 1)
		served := make(chan error, 1)
		go func() { served <- bus.ServeEmbedded(ctx, cfg, nil, nil, func(addr string) { ready <- addr }) }()
		select {
		case addr := <-ready:
			cfg.Embedded.Listen = addr
		case err := <-served:
			return EventsResult{}, fmt.Errorf("benchmarking events: %w", err)
		}
		defer func() {
			cancel()
			<-served
		}()
	}
	b, err := bus.Connect(ctx, cfg, bus.Options{Name: "bench"})
	if err != nil {
		return EventsResult{}, fmt.Errorf("benchmarking events: %w", err)
	}
	defer b.Close()

	// The databases.
	src, err := openDB(ctx, filepath.Join(opts.Dir, "source.db"))
	if err != nil {
		return EventsResult{}, err
	}
	defer store.Close(src)
	dst, err := openDB(ctx, filepath.Join(opts.Dir, "copy.db"))
	if err != nil {
		return EventsResult{}, err
	}
	defer store.Close(dst)
	for i := range opts.SKUs {
		if err := src.Exec(`INSERT INTO bench_stock VALUES (?, 0, 0, 0)`, sku(i)).Error; err != nil {
			return EventsResult{}, fmt.Errorf("benchmarking events: seeding: %w", err)
		}
	}

	// The relay.
	relay := outbox.NewRelay(src, b, outbox.RelayOptions{Name: "bench"})
	var wg sync.WaitGroup
	defer func() {
		cancel() // Deferred calls run last first: stop the relay and the consumer before waiting.
		wg.Wait()
	}()
	startPipeline := []func(){func() { wg.Go(func() { _ = relay.Run(ctx) }) }}

	// The consumer.
	var (
		mu    sync.Mutex
		lags  = make([]time.Duration, 0, opts.Events)
		calls atomic.Int64
		last  time.Time
		seen  = make(map[string]struct{}, opts.Events)
		done  = make(chan struct{})
	)
	apply := func(_ context.Context, tx *gorm.DB, e event.Event) error {
		var sc contract.StockChanged
		if err := e.Decode(&sc); err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO bench_stock (sku, on_hand, reserved, version) VALUES (?, ?, ?, ?)
			ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved,
			version = excluded.version WHERE excluded.version > bench_stock.version`,
			sc.SKU, sc.OnHand, sc.Reserved, sc.Version).Error
	}
	// observe records the lag of the events whose effects just committed.
	observe := func(evs []event.Event) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if _, dup := seen[e.ID]; dup {
				continue
			}
			seen[e.ID] = struct{}{}
			lags = append(lags, now.Sub(e.Time))
		}
		last = now
		if len(lags) == opts.Events {
			close(done)
		}
	}
	copts := bus.ConsumerOptions{
		Types:       []string{contract.TypeStockChanged},
		Concurrency: opts.ConsumerConcurrency,
		Logger:      opts.Logger,
	}
	if opts.SingleConsumer {
		h := func(ctx context.Context, e event.Event) error {
			calls.Add(1)
			if err := inbox.Handle(ctx, dst, "bench", e, func(ctx context.Context, tx *gorm.DB) error { return apply(ctx, tx, e) }); err != nil {
				return err
			}
			observe([]event.Event{e})
			return nil
		}
		startPipeline = append(startPipeline, func() { wg.Go(func() { _ = b.Consume(ctx, "bench", h, copts) }) })
	} else {
		h := func(ctx context.Context, evs []event.Event) error {
			calls.Add(int64(len(evs)))
			if err := inbox.HandleBatch(ctx, dst, "bench", evs, apply); err != nil {
				return err
			}
			observe(evs)
			return nil
		}
		startPipeline = append(startPipeline, func() { wg.Go(func() { _ = b.ConsumeBatch(ctx, "bench", h, copts) }) })
	}
	if err := b.EnsureConsumer(ctx, "bench", bus.ConsumerOptions{Types: []string{contract.TypeStockChanged}, Concurrency: opts.ConsumerConcurrency}); err != nil {
		return EventsResult{}, err
	}

	if !opts.Backlog {
		for _, f := range startPipeline {
			f()
		}
	}

	// The producers.
	cpu0 := ProcessCPU()
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, opts.Producers)
	var pwg sync.WaitGroup
	for p := range opts.Producers {
		pwg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(opts.Events) {
					return
				}
				if opts.Rate > 0 {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(opts.Rate))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				if err := change(ctx, src, sku(int(i)%opts.SKUs), p, i); err != nil {
					errs <- err
					return
				}
				relay.Notify()
			}
		})
	}
	pwg.Wait()
	produced := time.Since(start)
	if opts.Backlog {
		cpu0 = ProcessCPU()
		start = time.Now()
		for _, f := range startPipeline {
			f()
		}
	}
	close(errs)
	if err := <-errs; err != nil {
		return EventsResult{}, fmt.Errorf("benchmarking events: producing: %w", err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return EventsResult{}, errors.New("benchmarking events: not every event was applied within 2 minutes")
	case <-ctx.Done():
		return EventsResult{}, ctx.Err()
	}

	cpu := ProcessCPU() - cpu0
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lags)
	elapsed := last.Sub(start)
	return EventsResult{
		Events:      opts.Events,
		Elapsed:     elapsed,
		Throughput:  float64(opts.Events) / elapsed.Seconds(),
		ProduceFor:  produced,
		P50:         lags[len(lags)/2],
		P99:         lags[len(lags)*99/100],
		Max:         lags[len(lags)-1],
		Redelivery:  calls.Load() - int64(opts.Events),
		CPUPerEvent: cpu / time.Duration(opts.Events),
	}, nil
}

func sku(i int) string { return fmt.Sprintf("SKU-%03d", i) }

// change commits one stock change and its event.
func change(ctx context.Context, db *gorm.DB, sku string, producer int, i int64) error {
	return store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		var version int64
		if err := tx.Raw(`SELECT version FROM bench_stock WHERE sku = ?`, sku).Scan(&version).Error; err != nil {
			return err
		}
		sc := contract.StockChanged{SKU: sku, OnHand: int(i % 1000), Reserved: int(i % 7), Version: version + 1, Name: sku, PriceCents: 100}
		if err := tx.Exec(`UPDATE bench_stock SET on_hand = ?, reserved = ?, version = ? WHERE sku = ?`,
			sc.OnHand, sc.Reserved, sc.Version, sku).Error; err != nil {
			return err
		}
		return outbox.Record(ctx, tx, fmt.Sprintf("/bench/%d", producer), contract.TypeStockChanged, sku, sc)
	})
}

func openDB(ctx context.Context, path string) (*gorm.DB, error) {
	db, err := store.Open(ctx, "sqlite:"+path, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("benchmarking events: %w", err)
	}
	for _, migrate := range []func(context.Context, *gorm.DB) error{outbox.Migrate, inbox.Migrate} {
		if err := migrate(ctx, db); err != nil {
			store.Close(db)
			return nil, fmt.Errorf("benchmarking events: %w", err)
		}
	}
	err = db.Exec(`CREATE TABLE bench_stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, version INTEGER NOT NULL)`).Error
	if err != nil {
		store.Close(db)
		return nil, fmt.Errorf("benchmarking events: %w", err)
	}
	return db, nil
}
