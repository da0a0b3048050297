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

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/config"
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

func runSuite(t *testing.T, newServer func(testing.TB) testServer) {
	t.Run("OutboxDrainsAfterOutage", func(t *testing.T) { testOutboxDrainsAfterOutage(t, newServer(t)) })
	t.Run("RelayKilledMidBatch", func(t *testing.T) { testRelayKilledMidBatch(t, newServer(t)) })
	t.Run("ConsumerCrashBeforeAck", func(t *testing.T) { testConsumerCrashBeforeAck(t, newServer(t)) })
	t.Run("PoisonDeadLetteredAndReplayed", func(t *testing.T) { testPoisonDeadLetteredAndReplayed(t, newServer(t)) })
	t.Run("BatchConsumerIsolatesPoison", func(t *testing.T) { testBatchIsolatesPoison(t, newServer(t)) })
	t.Run("StockConvergesUnderRedelivery", func(t *testing.T) { testStockConverges(t, newServer(t)) })
	t.Run("StreamLimits", func(t *testing.T) {
		srv := newServer(t)
		if k, ok := srv.(*kafkaServer); ok {
			testTopicLimits(t, k)
			return
		}
		testStreamLimits(t, srv)
	})
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

// background runs fn until the returned stop is called or the test ends. stop waits for fn to
// return, for settle at most, and reports its error.
func background(t *testing.T, ctx context.Context, what string, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", what, err)
				}
			case <-time.After(settle):
				t.Errorf("%s still running %s after it was stopped", what, settle)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// runRelay runs r until the returned stop is called or the test ends.
func runRelay(t *testing.T, ctx context.Context, r *outbox.Relay) (stop func()) {
	t.Helper()
	return background(t, ctx, "relay", r.Run)
}

// runConsumer runs a durable consumer until the test ends.
func runConsumer(t *testing.T, ctx context.Context, b *Bus, name string, h Handler, opts ConsumerOptions) {
	t.Helper()
	background(t, ctx, "consumer "+name, func(ctx context.Context) error { return b.Consume(ctx, name, h, opts) })
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
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db := openDB(t, ctx, "producer.db")
	b := connect(t, ctx, srv)
	pub := &failWatch{inner: b, failed: make(chan int, 100)}
	relay := outbox.NewRelay(db, pub, fastRelay())
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
	waitFor(t, settle, "first events relayed", func() bool { return backlog(t, ctx, db) == 0 })
	waitFor(t, settle, "first events applied", func() bool { n, _ := applied(t, cdb); return n == 50 })

	srv.Stop(t)
	var down []event.Event
	for i := range 200 {
		down = append(down, newEvent(t, "test.drain.v1", fmt.Sprint("k", i%7), map[string]int{"i": 50 + i}))
	}
	record(t, ctx, db, down...)
	relay.Notify()
	// The relay has tried to publish all 200 and failed: none of them may be marked sent.
	pub.waitForFailure(t, len(down))
	if n := backlog(t, ctx, db); n != 200 {
		t.Fatalf("backlog while the bus is down = %d, want 200 (nothing may be marked sent)", n)
	}
	srv.Start(t)
	waitFor(t, settle, "outbox drained after the bus came back", func() bool { return backlog(t, ctx, db) == 0 })

	checkStored(t, ctx, b, "test.drain.v1", 250)
	waitFor(t, settle, "250 events applied", func() bool { n, _ := applied(t, cdb); return n == 250 })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// failWatch publishes through a real bus and reports the size of every batch that failed.
type failWatch struct {
	inner  *Bus
	failed chan int
}

func (p *failWatch) Publish(ctx context.Context, evs ...event.Event) error {
	err := p.inner.Publish(ctx, evs...)
	if err != nil {
		select {
		case p.failed <- len(evs):
		default: // The test is not watching; it needs only the latest failures.
		}
	}
	return err
}

// waitForFailure waits until a batch of n events failed to publish.
func (p *failWatch) waitForFailure(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(settle)
	for {
		select {
		case got := <-p.failed:
			if got == n {
				return
			}
		case <-timeout:
			t.Fatalf("no batch of %d events failed to publish within %s", n, settle)
		}
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
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
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

	// Kill 1: the relay's context is cancelled mid-batch. (The deadline only stops a relay
	// that is never killed, so that the test fails fast.)
	rctx, rcancel := context.WithTimeout(ctx, settle)
	defer rcancel()
	p1 := &killingPublisher{inner: b, killAfter: 4, kill: rcancel}
	if err := outbox.NewRelay(db, p1, opts).Run(rctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rctx.Err(), context.Canceled) {
		t.Fatalf("relay 1 was not killed within %s", settle)
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
	killed := make(chan struct{})
	p2 := &killingPublisher{inner: b, killAfter: 3, kill: func() { _ = store.Close(db2); close(killed) }}
	stop2 := runRelay(t, ctx, outbox.NewRelay(db2, p2, opts2))
	select {
	case <-killed:
	case <-time.After(settle):
		t.Fatalf("relay 2 was not killed within %s", settle)
	}
	stop2()
	if n := backlog(t, ctx, db); n != left1-200 {
		t.Fatalf("after kill 2 backlog = %d, want %d (its last batch published but not marked)", n, left1-200)
	}

	// Restart: a new relay waits out the dead one's lease, then drains the outbox.
	p3 := &killingPublisher{inner: b}
	runRelay(t, ctx, outbox.NewRelay(db, p3, opts))
	waitFor(t, settle, "outbox drained", func() bool { return backlog(t, ctx, db) == 0 })

	sent := p1.published.Load() + p2.published.Load() + p3.published.Load()
	if sent <= total {
		t.Errorf("relays published %d events, want more than %d (the killed batches again)", sent, total)
	}
	checkStored(t, ctx, b, "test.crash.v1", total)
	cdb := openDB(t, ctx, "consumer.db")
	runConsumer(t, ctx, b, "crash", applyHandler(cdb, "crash"), ConsumerOptions{Types: []string{"test.crash.v1"}})
	waitFor(t, settle, "every event applied", func() bool { n, _ := applied(t, cdb); return n == total })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// testConsumerCrashBeforeAck: a consumer that dies after committing an event's effect and
// before its ack reaches the server gets the event again, and the inbox keeps the effect
// single. An ack that could not be sent is not counted as consumed.
func testConsumerCrashBeforeAck(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
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

	reg1 := prometheus.NewRegistry()
	b1 := connectWith(t, ctx, srv, Options{Registerer: reg1})
	died := make(chan struct{})
	done1 := make(chan error, 1)
	var handled1 atomic.Int64
	go func() {
		done1 <- b1.Consume(ctx, "crashy", func(ctx context.Context, e event.Event) error {
			mu.Lock()
			calls[e.ID]++
			mu.Unlock()
			handled1.Add(1)
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
	case <-time.After(settle):
		t.Fatal("the first consumer never reached the target event")
	}
	select {
	case err := <-done1:
		if err == nil {
			t.Error("Consume returned nil after its connection closed, want an error")
		}
	case <-time.After(settle):
		t.Fatal("Consume did not return after its connection closed")
	}
	// Every event the first consumer handled was either acknowledged or counted as an ack
	// that could not be sent, the target's among the latter.
	crashy := map[string]string{"consumer": "crashy"}
	consumed := metricValue(t, reg1, "ficus_events_consumed_total", crashy)
	ackErrors := metricValue(t, reg1, "ficus_events_ack_errors_total", crashy)
	if ackErrors < 1 || consumed+ackErrors != float64(handled1.Load()) {
		t.Errorf("first consumer handled %d events, counted %v consumed and %v ack errors; want the unsent acks (at least the target's) counted apart",
			handled1.Load(), consumed, ackErrors)
	}

	b2 := connect(t, ctx, srv)
	runConsumer(t, ctx, b2, "crashy", func(ctx context.Context, e event.Event) error {
		mu.Lock()
		calls[e.ID]++
		mu.Unlock()
		return inbox.Handle(ctx, cdb, "crashy", e, func(_ context.Context, tx *gorm.DB) error { return apply(tx, e) })
	}, opts)
	waitFor(t, settle, "the event to be redelivered and every event applied", func() bool {
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
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
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
	// Deliveries are counted before the inbox, which would hide a second one.
	var bystanderPoison atomic.Int64
	bystander := inbox.Handler(bdb, "bystander", func(_ context.Context, tx *gorm.DB, e event.Event) error { return apply(tx, e) })
	runConsumer(t, ctx, b, "bystander", func(ctx context.Context, e event.Event) error {
		if e.ID == poison.ID {
			bystanderPoison.Add(1)
		}
		return bystander(ctx, e)
	}, opts)
	if err := b.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}

	waitFor(t, settle, "the other events applied past the poison", func() bool { n, _ := applied(t, cdb); return n == 20 })
	var dls []DeadLetter
	waitFor(t, settle, "the poison dead-lettered", func() bool {
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
	waitFor(t, settle, "the replayed event applied", func() bool { n, _ := applied(t, cdb); return n == 21 })
	if dls, err := b.DeadLetters(ctx); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after replay = %v, %v; want none", dls, err)
	}
	// A replay is for the consumer that failed. The bystander receives in stream order, so
	// once it has applied an event published after the replay, it would have received the
	// replay too, had it been sent to it.
	marker := newEvent(t, "test.fine.v1", "f", map[string]int{"i": 20})
	if err := b.Publish(ctx, marker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "the bystander to apply the event published after the replay", func() bool {
		seen, err := inbox.Seen(ctx, bdb, "bystander", marker.ID)
		if err != nil {
			t.Fatal(err)
		}
		return seen
	})
	if n := bystanderPoison.Load(); n != 1 {
		t.Errorf("the bystander consumer received the poison event %d times, want 1 (a replay is for the failed consumer)", n)
	}
	if n, _ := applied(t, bdb); n != 22 {
		t.Errorf("bystander applied %d events, want 22", n)
	}
	// Counters move just after the effects the test waited for; wait for their final values.
	picky := map[string]string{"consumer": "picky"}
	want := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ficus_events_published_total", nil, 22},
		{"ficus_events_consumed_total", picky, 22},
		{"ficus_events_ack_errors_total", picky, 0},
		{"ficus_events_handler_errors_total", picky, 3},
		{"ficus_events_redeliveries_total", picky, 2},
		{"ficus_events_dead_lettered_total", picky, 1},
		{"ficus_events_replayed_total", nil, 1},
		{"ficus_events_consumed_total", map[string]string{"consumer": "bystander"}, 22},
	}
	var diff []string
	waitFor(t, settle, "the metrics to add up", func() bool {
		diff = diff[:0]
		for _, m := range want {
			if got := metricValue(t, reg, m.name, m.labels); got != m.want {
				diff = append(diff, fmt.Sprintf("%s%v = %v, want %v", m.name, m.labels, got, m.want))
			}
		}
		return len(diff) == 0
	}, func() string { return strings.Join(diff, "; ") })
}

// testBatchIsolatesPoison: with ConsumeBatch a failing event fails its whole batch, the
// batch is retried one event at a time, and only the failing event is dead-lettered.
func testBatchIsolatesPoison(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
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
	background(t, ctx, "batch consumer", func(ctx context.Context) error {
		return b.ConsumeBatch(ctx, "batcher", func(ctx context.Context, evs []event.Event) error {
			batches.Add(1)
			if n := int64(len(evs)); n > biggest.Load() {
				biggest.Store(n)
			}
			return apply(ctx, evs)
		}, ConsumerOptions{MaxAttempts: 2, Backoff: func(int) time.Duration { return 20 * time.Millisecond }, BatchSize: 50})
	})
	waitFor(t, settle, "199 events applied", func() bool { n, _ := applied(t, cdb); return n == 199 })
	waitFor(t, settle, "the poison dead-lettered", func() bool {
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
	// Producing the changes takes 10-15s with the race detector on a busy machine; that is
	// the one long step, and only waiting for convergence has a deadline of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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

	// Making the changes takes seconds; a copy that stops catching up meanwhile stops the
	// writers and fails the test at once instead of after them.
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	stalled := watchProgress(t, wctx, stopWriters, 5*time.Second, func() (copied, made int64) {
		return versions(dst), versions(src)
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for range changes / writers {
				sku := fmt.Sprintf("SKU-%02d", rand.IntN(skus))
				err := store.Write(wctx, src, func(ctx context.Context, tx *gorm.DB) error {
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
	if msg := stalled(); msg != "" {
		t.Fatal(msg)
	}
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
	var diff string
	// The consumer works while the changes are made and usually ends within a second of them.
	waitFor(t, 2*settle, "the copy to converge", func() bool {
		if msg := stalled(); msg != "" {
			t.Fatal(msg)
		}
		got := read(dst)
		for sku, w := range want {
			if got[sku] != w {
				diff = fmt.Sprintf("%s: copy %+v, source %+v", sku, got[sku], w)
				return false
			}
		}
		return true
	}, func() string { return diff })
	if injected.Load() == 0 {
		t.Error("no failures were injected")
	}
	t.Logf("%d changes on %d SKUs produced in %s, converged after %s with %d injected failures",
		changes, skus, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), injected.Load())
}

// testStreamLimits: the streams take their age and size limits from the config, a client with
// other limits updates them, and a full stream drops its oldest events to take new ones.
func testStreamLimits(t *testing.T, srv testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := srv.Events()
	cfg.Stream = config.StreamLimits{MaxAge: config.Duration(time.Hour), MaxBytes: 256 << 10}
	cfg.DeadLetters = config.StreamLimits{MaxAge: config.Duration(2 * time.Hour), MaxBytes: 128 << 10}
	b := connectTo(t, ctx, cfg, Options{})
	info := func(name string) *jetstream.StreamInfo {
		t.Helper()
		s, err := b.nats.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		i, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	for _, want := range []struct {
		stream string
		age    time.Duration
		bytes  int64
	}{{EventsStream, time.Hour, 256 << 10}, {DLQStream, 2 * time.Hour, 128 << 10}} {
		c := info(want.stream).Config
		if c.MaxAge != want.age || c.MaxBytes != want.bytes || c.Discard != jetstream.DiscardOld || c.Duplicates != config.DuplicateWindow {
			t.Errorf("%s: max_age %s, max_bytes %d, discard %s, duplicates %s; want %s, %d, old, %s",
				want.stream, c.MaxAge, c.MaxBytes, c.Discard, c.Duplicates, want.age, want.bytes, config.DuplicateWindow)
		}
	}

	// A client whose config.yaml says otherwise brings the streams to its limits.
	cfg.Stream.MaxBytes = 64 << 10
	b2 := connectTo(t, ctx, cfg, Options{})
	if got := info(EventsStream).Config.MaxBytes; got != 64<<10 {
		t.Fatalf("events max_bytes after a client with 64KiB connected = %d", got)
	}

	// 400 events of about 600 bytes are more than 64KiB: the oldest make room.
	pad := strings.Repeat("x", 400)
	var evs []event.Event
	for i := range 400 {
		evs = append(evs, newEvent(t, "test.limit.v1", "l", map[string]any{"i": i, "pad": pad}))
	}
	for i := 0; i < len(evs); i += 50 {
		if err := b2.Publish(ctx, evs[i:i+50]...); err != nil {
			t.Fatalf("publishing into a full stream: %v", err)
		}
	}
	state := info(EventsStream).State
	if state.Bytes > 64<<10 || state.Msgs == 0 || state.Msgs >= uint64(len(evs)) {
		t.Errorf("stream holds %d events in %d bytes; want some but not all of %d, within 64KiB", state.Msgs, state.Bytes, len(evs))
	}
	s, err := b.nats.js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.GetMsg(ctx, state.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if got := last.Header.Get(HeaderID); got != evs[len(evs)-1].ID {
		t.Errorf("newest event kept is %s, want the last published, %s", got, evs[len(evs)-1].ID)
	}
	if _, err := s.GetMsg(ctx, 1); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the oldest event is still there (%v), want it dropped to make room", err)
	}
}

// versions returns the sum of the stock versions db holds: it grows with every change made,
// or copied, and the copy has caught up when its sum equals the source's. A failed read
// counts as no progress.
func versions(db *gorm.DB) int64 {
	var n int64
	_ = db.Raw(`SELECT COALESCE(SUM(version), 0) FROM test_stock`).Scan(&n).Error
	return n
}

// watchProgress polls progress until ctx ends. If the copy is behind and has not moved for
// stall, it calls stop; the returned func then says so (and is "" until then). The watch ends
// before the test's other cleanups run.
func watchProgress(t *testing.T, ctx context.Context, stop func(), stall time.Duration, progress func() (copied, made int64)) func() string {
	var msg atomic.Pointer[string]
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		last, moved := int64(-1), time.Now()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			copied, made := progress()
			if copied == made || copied > last {
				last, moved = copied, time.Now()
				continue
			}
			if time.Since(moved) > stall {
				m := fmt.Sprintf("the copy stalled: no progress for %s with %d of %d versions copied", stall, copied, made)
				msg.Store(&m)
				stop()
				return
			}
		}
	}()
	return func() string {
		if m := msg.Load(); m != nil {
			return *m
		}
		return ""
	}
}
