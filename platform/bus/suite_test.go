package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// The contract suite: everything Ficus promises about events, run against the embedded server
// and against an external nats-server process.

func TestEmbedded(t *testing.T) { runSuite(t, newEmbedded) }

func TestExternal(t *testing.T) { runSuite(t, newExternal) }

func runSuite(t *testing.T, newServer func(*testing.T) testServer) {
	t.Run("OutboxDrainsAfterOutage", func(t *testing.T) { testOutboxDrainsAfterOutage(t, newServer(t)) })
	t.Run("RelayKilledMidBatch", func(t *testing.T) { testRelayKilledMidBatch(t, newServer(t)) })
	t.Run("ConsumerCrashBeforeAck", func(t *testing.T) { testConsumerCrashBeforeAck(t, newServer(t)) })
	t.Run("PoisonDeadLetteredAndReplayed", func(t *testing.T) { testPoisonDeadLetteredAndReplayed(t, newServer(t)) })
	t.Run("BatchConsumerIsolatesPoison", func(t *testing.T) { testBatchIsolatesPoison(t, newServer(t)) })
	t.Run("StockConvergesUnderRedelivery", func(t *testing.T) { testStockConverges(t, newServer(t)) })
}

// fastRelay are relay options that make the tests quick.
func fastRelay() outbox.RelayOptions {
	return outbox.RelayOptions{
		PollInterval: 10 * time.Millisecond,
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
		LeaseTTL:     time.Second,
	}
}

// runRelay runs r until the returned stop is called.
func runRelay(t *testing.T, ctx context.Context, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// runConsumer runs a durable consumer until the returned stop is called; stop returns
// Consume's error.
func runConsumer(t *testing.T, ctx context.Context, b *Bus, name string, h Handler, opts ConsumerOptions) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, name, h, opts) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func backlog(t *testing.T, ctx context.Context, db *gorm.DB) int64 {
	t.Helper()
	n, _, err := outbox.Backlog(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func applyHandler(db *gorm.DB, consumer string) Handler {
	return inbox.Handler(db, consumer, func(_ context.Context, tx *gorm.DB, e event.Event) error { return apply(tx, e) })
}

// testOutboxDrainsAfterOutage: events recorded while the bus is down are published, each
// once, when it comes back.
func testOutboxDrainsAfterOutage(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	db := openDB(t, ctx, "producer.db")
	b := connect(t, ctx, srv)
	relay := outbox.NewRelay(db, b, fastRelay())
	runRelay(t, ctx, relay)
	// The consumer runs throughout: it must ride out the outage too.
	cdb := openDB(t, ctx, "consumer.db")
	runConsumer(t, ctx, connect(t, ctx, srv), "drain", applyHandler(cdb, "drain"), ConsumerOptions{Types: []string{"test.drain.v1"}})

	var evs []event.Event
	for i := range 50 {
		evs = append(evs, newEvent(t, "test.drain.v1", fmt.Sprint("k", i%7), map[string]int{"i": i}))
	}
	record(t, ctx, db, evs...)
	relay.Notify()
	waitFor(t, 20*time.Second, "first events relayed", func() bool { return backlog(t, ctx, db) == 0 })
	waitFor(t, 20*time.Second, "first events applied", func() bool { n, _ := applied(t, cdb); return n == 50 })

	srv.Stop(t)
	var down []event.Event
	for i := range 200 {
		down = append(down, newEvent(t, "test.drain.v1", fmt.Sprint("k", i%7), map[string]int{"i": 50 + i}))
	}
	record(t, ctx, db, down...)
	relay.Notify()
	time.Sleep(300 * time.Millisecond)
	if n := backlog(t, ctx, db); n != 200 {
		t.Fatalf("backlog while the bus is down = %d, want 200 (nothing may be marked sent)", n)
	}
	srv.Start(t)
	waitFor(t, 40*time.Second, "outbox drained after the bus came back", func() bool { return backlog(t, ctx, db) == 0 })

	if n := streamMsgs(t, ctx, b, EventsPrefix+"test.drain.v1"); n != 250 {
		t.Errorf("stream holds %d events, want 250", n)
	}
	waitFor(t, 30*time.Second, "250 events applied", func() bool { n, _ := applied(t, cdb); return n == 250 })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// killingPublisher publishes through a real bus, then, after a number of batches, kills its
// relay between publishing a batch and marking it sent.
type killingPublisher struct {
	inner     *Bus
	published atomic.Int64
	batches   atomic.Int64
	killAfter int64
	kill      func()
}

func (p *killingPublisher) Publish(ctx context.Context, evs ...event.Event) error {
	if err := p.inner.Publish(ctx, evs...); err != nil {
		return err
	}
	p.published.Add(int64(len(evs)))
	if p.batches.Add(1) == p.killAfter {
		p.kill()
	}
	return nil
}

// testRelayKilledMidBatch: a relay killed after publishing and before marking (by its context,
// then by its database closing under it) leaves rows that the next relay publishes again;
// JetStream and the inbox drop the duplicates and every event arrives once.
func testRelayKilledMidBatch(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "producer.db")
	db := openDBAt(t, ctx, path)
	b := connect(t, ctx, srv)
	const total = 2000
	evs := make([]event.Event, total)
	for i := range evs {
		evs[i] = newEvent(t, "test.crash.v1", fmt.Sprint("k", i%13), map[string]int{"i": i})
	}
	err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error { return outbox.Add(ctx, tx, evs...) })
	if err != nil {
		t.Fatal(err)
	}
	opts := fastRelay()
	opts.BatchSize = 100

	// Kill 1: the relay's context is cancelled mid-batch.
	rctx, rcancel := context.WithCancel(ctx)
	p1 := &killingPublisher{inner: b, killAfter: 4, kill: rcancel}
	if err := outbox.NewRelay(db, p1, opts).Run(rctx); err != nil {
		t.Fatal(err)
	}
	left1 := backlog(t, ctx, db)
	if left1 == 0 || left1 > total-300 {
		t.Fatalf("after kill 1 backlog = %d, want between 1 and %d", left1, total-300)
	}

	// Kill 2: the relay's database is closed under it mid-batch; it cannot release its lease.
	db2, err := store.Open(ctx, "sqlite:"+path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts2 := opts
	opts2.Holder = "relay-2"
	p2 := &killingPublisher{inner: b, killAfter: 3, kill: func() { _ = store.Close(db2) }}
	stop2 := runRelay(t, ctx, outbox.NewRelay(db2, p2, opts2))
	waitFor(t, 20*time.Second, "relay 2 to be killed", func() bool { return p2.batches.Load() >= 3 })
	time.Sleep(100 * time.Millisecond)
	stop2()
	if n := backlog(t, ctx, db); n != left1-200 {
		t.Fatalf("after kill 2 backlog = %d, want %d (its last batch published but not marked)", n, left1-200)
	}

	// Restart: a new relay waits out the dead one's lease, then drains the outbox.
	p3 := &killingPublisher{inner: b}
	runRelay(t, ctx, outbox.NewRelay(db, p3, opts))
	waitFor(t, 40*time.Second, "outbox drained", func() bool { return backlog(t, ctx, db) == 0 })

	sent := p1.published.Load() + p2.published.Load() + p3.published.Load()
	if sent <= total {
		t.Errorf("relays published %d events, want more than %d (the killed batches again)", sent, total)
	}
	if n := streamMsgs(t, ctx, b, EventsPrefix+"test.crash.v1"); n != total {
		t.Errorf("stream holds %d events, want %d: duplicates were not dropped", n, total)
	}
	cdb := openDB(t, ctx, "consumer.db")
	runConsumer(t, ctx, b, "crash", applyHandler(cdb, "crash"), ConsumerOptions{Types: []string{"test.crash.v1"}})
	waitFor(t, 30*time.Second, "every event applied", func() bool { n, _ := applied(t, cdb); return n == total })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// testConsumerCrashBeforeAck: a consumer that dies after committing an event's effect and
// before its ack reaches the server gets the event again, and the inbox keeps the effect
// single.
func testConsumerCrashBeforeAck(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub := connect(t, ctx, srv)
	cdb := openDB(t, ctx, "consumer.db")
	evs := make([]event.Event, 20)
	for i := range evs {
		evs[i] = newEvent(t, "test.ack.v1", "s", map[string]int{"i": i})
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	target := evs[5].ID
	var mu sync.Mutex
	calls := map[string]int{}
	opts := ConsumerOptions{AckWait: time.Second, Types: []string{"test.ack.v1"}}

	b1 := connect(t, ctx, srv)
	died := make(chan struct{})
	done1 := make(chan error, 1)
	go func() {
		done1 <- b1.Consume(ctx, "crashy", func(ctx context.Context, e event.Event) error {
			mu.Lock()
			calls[e.ID]++
			mu.Unlock()
			err := inbox.Handle(ctx, cdb, "crashy", e, func(_ context.Context, tx *gorm.DB) error { return apply(tx, e) })
			if e.ID == target {
				b1.Close() // The process dies: the effect is committed, the ack never leaves.
				close(died)
			}
			return err
		}, opts)
	}()
	select {
	case <-died:
	case <-time.After(20 * time.Second):
		t.Fatal("the first consumer never reached the target event")
	}
	select {
	case err := <-done1:
		if err == nil {
			t.Error("Consume returned nil after its connection closed, want an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Consume did not return after its connection closed")
	}

	b2 := connect(t, ctx, srv)
	runConsumer(t, ctx, b2, "crashy", func(ctx context.Context, e event.Event) error {
		mu.Lock()
		calls[e.ID]++
		mu.Unlock()
		return inbox.Handle(ctx, cdb, "crashy", e, func(_ context.Context, tx *gorm.DB) error { return apply(tx, e) })
	}, opts)
	waitFor(t, 30*time.Second, "the event to be redelivered and every event applied", func() bool {
		mu.Lock()
		redelivered := calls[target] >= 2
		mu.Unlock()
		n, _ := applied(t, cdb)
		return redelivered && n == int64(len(evs))
	})
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// testPoisonDeadLetteredAndReplayed: a handler that always fails does not hold up other
// events, is retried with backoff (no hot loop), lands in the dead-letter stream with its
// error after MaxAttempts, and a replay after the fix reaches that consumer alone.
func testPoisonDeadLetteredAndReplayed(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	b := connectWith(t, ctx, srv, Options{Registerer: reg})
	cdb := openDB(t, ctx, "consumer.db")
	bdb := openDB(t, ctx, "bystander.db")

	poison := newEvent(t, "test.poison.v1", "p", map[string]string{"x": "y"})
	evs := []event.Event{poison}
	for i := range 20 {
		evs = append(evs, newEvent(t, "test.fine.v1", "f", map[string]int{"i": i}))
	}
	var broken atomic.Bool
	broken.Store(true)
	var mu sync.Mutex
	var attempts []time.Time
	h := inbox.Handler(cdb, "picky", func(_ context.Context, tx *gorm.DB, e event.Event) error {
		if e.ID == poison.ID {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			if broken.Load() {
				return errors.New("boom: cannot apply")
			}
		}
		return apply(tx, e)
	})
	const backoff = 100 * time.Millisecond
	opts := ConsumerOptions{MaxAttempts: 3, Backoff: func(int) time.Duration { return backoff }}
	runConsumer(t, ctx, b, "picky", h, opts)
	var bystanderPoison atomic.Int64
	runConsumer(t, ctx, b, "bystander", inbox.Handler(bdb, "bystander", func(_ context.Context, tx *gorm.DB, e event.Event) error {
		if e.ID == poison.ID {
			bystanderPoison.Add(1)
		}
		return apply(tx, e)
	}), opts)
	if err := b.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 20*time.Second, "the other events applied past the poison", func() bool { n, _ := applied(t, cdb); return n == 20 })
	var dls []DeadLetter
	waitFor(t, 20*time.Second, "the poison dead-lettered", func() bool {
		var err error
		dls, err = b.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(dls) == 1
	})
	dl := dls[0]
	if dl.Consumer != "picky" || dl.Event.ID != poison.ID || dl.Attempts != 3 || !strings.Contains(dl.Error, "boom") {
		t.Errorf("dead letter = %+v, want consumer picky, event %s, 3 attempts, error boom", dl, poison.ID)
	}
	mu.Lock()
	if len(attempts) != 3 {
		t.Errorf("poison handled %d times, want 3", len(attempts))
	}
	for i := 1; i < len(attempts); i++ {
		if gap := attempts[i].Sub(attempts[i-1]); gap < backoff*8/10 {
			t.Errorf("retry %d came %s after the previous one, want at least the %s backoff", i, gap, backoff)
		}
	}
	mu.Unlock()

	broken.Store(false)
	if err := b.Replay(ctx, dl.Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the replayed event applied", func() bool { n, _ := applied(t, cdb); return n == 21 })
	if dls, err := b.DeadLetters(ctx); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after replay = %v, %v; want none", dls, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := bystanderPoison.Load(); n != 1 {
		t.Errorf("the bystander consumer saw the poison event %d times, want 1 (a replay is for the failed consumer)", n)
	}
	if n, _ := applied(t, bdb); n != 21 {
		t.Errorf("bystander applied %d events, want 21", n)
	}
	picky := map[string]string{"consumer": "picky"}
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ficus_events_published_total", nil, 21},
		{"ficus_events_consumed_total", picky, 21},
		{"ficus_events_handler_errors_total", picky, 3},
		{"ficus_events_redeliveries_total", picky, 2},
		{"ficus_events_dead_lettered_total", picky, 1},
		{"ficus_events_replayed_total", nil, 1},
		{"ficus_events_consumed_total", map[string]string{"consumer": "bystander"}, 21},
	} {
		if got := metricValue(t, reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
}

// testBatchIsolatesPoison: with ConsumeBatch a failing event fails its whole batch, the
// batch is retried one event at a time, and only the failing event is dead-lettered.
func testBatchIsolatesPoison(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := connect(t, ctx, srv)
	cdb := openDB(t, ctx, "consumer.db")
	var evs []event.Event
	for i := range 200 {
		evs = append(evs, newEvent(t, "test.batch.v1", "b", map[string]int{"i": i}))
	}
	poison := evs[77].ID
	if err := b.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	var batches, biggest atomic.Int64
	apply := inbox.BatchHandler(cdb, "batcher", func(_ context.Context, tx *gorm.DB, e event.Event) error {
		if e.ID == poison {
			return errors.New("poison")
		}
		return apply(tx, e)
	})
	runConsumer2 := func() {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- b.ConsumeBatch(ctx, "batcher", func(ctx context.Context, evs []event.Event) error {
				batches.Add(1)
				if n := int64(len(evs)); n > biggest.Load() {
					biggest.Store(n)
				}
				return apply(ctx, evs)
			}, ConsumerOptions{MaxAttempts: 2, Backoff: func(int) time.Duration { return 20 * time.Millisecond }, BatchSize: 50})
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ConsumeBatch: %v", err)
			}
		})
	}
	runConsumer2()
	waitFor(t, 20*time.Second, "199 events applied", func() bool { n, _ := applied(t, cdb); return n == 199 })
	waitFor(t, 20*time.Second, "the poison dead-lettered", func() bool {
		dls, err := b.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(dls) == 1 && dls[0].Event.ID == poison && dls[0].Consumer == "batcher"
	})
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
	if biggest.Load() < 2 {
		t.Errorf("largest batch held %d events; batching never happened", biggest.Load())
	}
	t.Logf("%d handler calls, largest batch %d", batches.Load(), biggest.Load())
}

// testStockConverges: a consumer materialising stock from stock_changed events (absolute
// figures, per-SKU version, stale versions ignored) ends equal to the source after many
// concurrent changes, with failures and lost acks injected so events are redelivered and
// arrive out of order.
func testStockConverges(t *testing.T, srv testServer) {
	const (
		skus     = 50
		changes  = 10000
		writers  = 4
		failRate = 0.05
	)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	src := openDB(t, ctx, "source.db")
	dst := openDB(t, ctx, "copy.db")
	b := connect(t, ctx, srv)
	for i := range skus {
		if err := src.Exec(`INSERT INTO test_stock VALUES (?, 0, 0, 0)`, fmt.Sprintf("SKU-%02d", i)).Error; err != nil {
			t.Fatal(err)
		}
	}
	relay := outbox.NewRelay(src, b, fastRelay())
	runRelay(t, ctx, relay)

	var injected atomic.Int64
	h := func(ctx context.Context, e event.Event) error {
		r := rand.Float64()
		if r < failRate {
			injected.Add(1)
			return errors.New("injected failure before applying")
		}
		err := inbox.Handle(ctx, dst, "stockcopy", e, func(_ context.Context, tx *gorm.DB) error {
			var sc contract.StockChanged
			if err := e.Decode(&sc); err != nil {
				return err
			}
			return tx.Exec(`INSERT INTO test_stock (sku, on_hand, reserved, version) VALUES (?, ?, ?, ?)
				ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved,
				version = excluded.version WHERE excluded.version > test_stock.version`,
				sc.SKU, sc.OnHand, sc.Reserved, sc.Version).Error
		})
		if err == nil && r < 2*failRate {
			injected.Add(1)
			return errors.New("injected lost ack after applying")
		}
		return err
	}
	runConsumer(t, ctx, b, "stockcopy", h, ConsumerOptions{
		Types:       []string{contract.TypeStockChanged},
		Concurrency: 4,
		MaxAttempts: 1000,
		Backoff:     func(int) time.Duration { return 5 * time.Millisecond },
	})

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for range changes / writers {
				sku := fmt.Sprintf("SKU-%02d", rand.IntN(skus))
				err := store.Write(ctx, src, func(ctx context.Context, tx *gorm.DB) error {
					var row struct {
						OnHand, Reserved int
						Version          int64
					}
					if err := tx.Raw(`SELECT on_hand, reserved, version FROM test_stock WHERE sku = ?`, sku).Scan(&row).Error; err != nil {
						return err
					}
					sc := contract.StockChanged{SKU: sku, OnHand: rand.IntN(1000), Reserved: rand.IntN(50), Version: row.Version + 1, Name: sku, PriceCents: 100}
					if err := tx.Exec(`UPDATE test_stock SET on_hand = ?, reserved = ?, version = ? WHERE sku = ?`,
						sc.OnHand, sc.Reserved, sc.Version, sku).Error; err != nil {
						return err
					}
					return outbox.Record(ctx, tx, fmt.Sprintf("/test/writer-%d", w), contract.TypeStockChanged, sku, sc)
				})
				if err != nil {
					errs <- err
					return
				}
				relay.Notify()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	produced := time.Since(start)

	type stock struct {
		SKU              string
		OnHand, Reserved int
		Version          int64
	}
	read := func(db *gorm.DB) map[string]stock {
		var rows []stock
		if err := db.Raw(`SELECT sku, on_hand, reserved, version FROM test_stock`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		m := map[string]stock{}
		for _, r := range rows {
			m[r.SKU] = r
		}
		return m
	}
	want := read(src)
	var total int64
	for _, s := range want {
		total += s.Version
	}
	if total != changes {
		t.Fatalf("source versions add up to %d, want %d", total, changes)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, diff := read(dst), ""
		for sku, w := range want {
			if got[sku] != w {
				diff = fmt.Sprintf("%s: copy %+v, source %+v", sku, got[sku], w)
				break
			}
		}
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy did not converge: %s", diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if injected.Load() == 0 {
		t.Error("no failures were injected")
	}
	t.Logf("%d changes on %d SKUs produced in %s, converged after %s with %d injected failures",
		changes, skus, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), injected.Load())
}
