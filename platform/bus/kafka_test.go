package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus/kafkatest"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/inbox"
)

// kafkaServer is a Kafka cluster of franz-go's kfake, in the test process, listening on
// loopback (kafkatest). It keeps its data in a directory, so that Stop and Start take the bus
// down and bring it back, on the same ports, with what it held.
type kafkaServer struct {
	*kafkatest.Cluster
}

// newKafka starts a 3-broker kfake cluster, stopped when the test ends.
func newKafka(t testing.TB) testServer {
	t.Helper()
	return &kafkaServer{kafkatest.StartCluster(t, 3)}
}

func (s *kafkaServer) Events() config.Events { return config.Events{Bus: s.URL()} }

// TestKafka runs the contract suite on a 3-broker Kafka cluster (kfake), with the topics
// replicated on all three (events.replicas defaults to 3 for three brokers).
func TestKafka(t *testing.T) { runSuite(t, newKafka) }

// testTopicLimits: the topics take their retention from the config, a client with other
// limits updates it, and retention drops the oldest events to keep within it.
func testTopicLimits(t *testing.T, srv *kafkaServer) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := srv.Events()
	cfg.Stream = config.StreamLimits{MaxAge: config.Duration(time.Hour), MaxBytes: 256 << 10}
	cfg.DeadLetters = config.StreamLimits{MaxAge: config.Duration(2 * time.Hour), MaxBytes: 128 << 10}
	b := connectTo(t, ctx, cfg, Options{})
	usage := func() map[string]Usage {
		t.Helper()
		us, err := b.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Usage{}
		for _, u := range us {
			m[u.Stream] = u
		}
		return m
	}
	for _, want := range []struct {
		topic string
		age   time.Duration
		bytes int64
	}{{EventsStream, time.Hour, 256 << 10}, {DLQStream, 2 * time.Hour, 128 << 10}} {
		if u := usage()[want.topic]; u.MaxAge != want.age || u.MaxBytes != want.bytes {
			t.Errorf("%s: retention %s and %d bytes; want %s and %d", want.topic, u.MaxAge, u.MaxBytes, want.age, want.bytes)
		}
	}

	// A client whose config.yaml says otherwise brings the topics to its limits.
	cfg.Stream.MaxBytes = 64 << 10
	b2 := connectTo(t, ctx, cfg, Options{})
	if got := usage()[EventsStream].MaxBytes; got != 64<<10 {
		t.Fatalf("events retention.bytes after a client with 64KiB connected = %d", got)
	}

	pad := strings.Repeat("x", 400)
	var evs []any
	for i := range 400 {
		evs = append(evs, map[string]any{"i": i, "pad": pad})
	}
	for i := 0; i < len(evs); i += 50 {
		var batch = evs[i : i+50]
		for _, d := range batch {
			if err := b2.Publish(ctx, newEvent(t, "test.limit.v1", "l", d)); err != nil {
				t.Fatalf("publishing into a full topic: %v", err)
			}
		}
	}
	// The brokers apply retention in the background (log.retention.check.interval.ms); the
	// test has kfake do it now.
	srv.Kfake().ApplyRetention()
	pos, err := b.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Last != 400 || pos.First <= 1 {
		t.Errorf("topic stands at %+v; want the oldest events dropped and the 400th kept", pos)
	}
	if u := usage()[EventsStream]; u.Msgs == 0 || u.Msgs >= 400 {
		t.Errorf("topic holds %d events; want some but not all of 400", u.Msgs)
	}
}

// TestKafkaCommitsAfterTheInbox: a consumer that dies after it received an event and before
// its inbox write never has that event's offset committed; the group's next member gets it
// again and applies it, and every other event exactly once.
func TestKafkaCommitsAfterTheInbox(t *testing.T) {
	srv := newKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	pub := connect(t, ctx, srv)
	cdb := openDB(t, ctx, "consumer.db")
	evs := make([]event.Event, 30)
	for i := range evs {
		evs[i] = newEvent(t, "test.commit.v1", "one-aggregate", map[string]int{"i": i})
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	const target = 10 // its offset too: the topic is new
	var mu sync.Mutex
	delivered := map[string]int{}
	count := func(e event.Event) {
		mu.Lock()
		delivered[e.ID]++
		mu.Unlock()
	}
	opts := ConsumerOptions{Types: []string{"test.commit.v1"}}

	b1 := connect(t, ctx, srv)
	died := make(chan error, 1)
	go func() {
		died <- b1.Consume(ctx, "committer", func(ctx context.Context, e event.Event) error {
			count(e)
			if e.ID == evs[target].ID {
				b1.Close() // The process dies before it writes the inbox row.
				return errors.New("killed")
			}
			return inbox.Handle(ctx, cdb, "committer", e, func(_ context.Context, tx *gorm.DB) error { return apply(tx, e) })
		}, opts)
	}()
	select {
	case err := <-died:
		if err == nil {
			t.Fatal("Consume returned nil after its bus was closed, want an error")
		}
	case <-time.After(settle):
		t.Fatal("the first consumer did not die at the target event")
	}
	offsets, err := pub.kafka.adm.FetchOffsets(ctx, groupPrefix+"committer")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offsets.Lookup(EventsStream, 0); ok && o.At > target {
		t.Fatalf("the group committed offset %d, past the event at %d whose inbox row was never written", o.At, target)
	}

	b2 := connect(t, ctx, srv)
	runConsumer(t, ctx, b2, "committer", func(ctx context.Context, e event.Event) error {
		count(e)
		return inbox.Handle(ctx, cdb, "committer", e, func(_ context.Context, tx *gorm.DB) error { return apply(tx, e) })
	}, opts)
	waitFor(t, settle, "every event applied", func() bool { n, _ := applied(t, cdb); return n == int64(len(evs)) })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
	mu.Lock()
	if delivered[evs[target].ID] < 2 {
		t.Errorf("the event the dead consumer never wrote was delivered %d times, want it again after the crash", delivered[evs[target].ID])
	}
	mu.Unlock()
	waitFor(t, settle, "the group's offsets committed up to the end", func() bool {
		n, err := pub.Backlog(ctx, "committer")
		return err == nil && n == 0
	})
}

// TestKafkaKeepsPerKeyOrder: with several handlers at once and failures retried, the events
// of one aggregate (one key) are still handled one at a time, in the order published.
func TestKafkaKeepsPerKeyOrder(t *testing.T) {
	srv := newKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := srv.Events()
	cfg.Kafka.Partitions = 3
	b := connectTo(t, ctx, cfg, Options{})
	const keys, per = 8, 50
	var evs []event.Event
	for i := range per {
		for k := range keys {
			evs = append(evs, newEvent(t, "test.order.v1", fmt.Sprint("agg-", k), map[string]int{"n": i}))
		}
	}
	if err := b.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]int{}
	busy := map[string]bool{}
	total := 0
	failures := 0
	h := func(_ context.Context, e event.Event) error {
		var d struct{ N int }
		if err := e.Decode(&d); err != nil {
			return Permanent(err)
		}
		mu.Lock()
		if busy[e.Subject] {
			mu.Unlock()
			return Permanent(fmt.Errorf("two events of %s handled at once", e.Subject))
		}
		busy[e.Subject] = true
		fail := rand.IntN(5) == 0
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // handling takes a moment
		mu.Lock()
		defer mu.Unlock()
		busy[e.Subject] = false
		if fail {
			failures++
			return errors.New("injected failure")
		}
		seen[e.Subject] = append(seen[e.Subject], d.N)
		total++
		return nil
	}
	runConsumer(t, ctx, b, "ordered", h, ConsumerOptions{Concurrency: 4, MaxAttempts: 100, Backoff: func(int) time.Duration { return time.Millisecond }})
	waitFor(t, settle, "every event handled", func() bool { mu.Lock(); defer mu.Unlock(); return total == len(evs) })
	mu.Lock()
	defer mu.Unlock()
	for k, ns := range seen {
		for i, n := range ns {
			if n != i {
				t.Fatalf("%s: events handled in the order %v, want 0..%d", k, ns, per-1)
			}
		}
	}
	if failures == 0 {
		t.Error("no failure was injected")
	}
	if dls, err := b.DeadLetters(ctx); err != nil || len(dls) != 0 {
		t.Errorf("dead letters = %v, %v; want none", dls, err)
	}
}

// TestKafkaDeadLetterParkedTwiceListedOnce: a consumer that dies between parking a record
// and committing its offset parks it again when the record comes back; the listing shows it
// once, and replaying it removes both copies.
func TestKafkaDeadLetterParkedTwiceListedOnce(t *testing.T) {
	srv := newKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	b := connect(t, ctx, srv)
	e := newEvent(t, "test.dl.v1", "x", map[string]int{"i": 1})
	rec, err := eventRecord(EventsStream, e)
	if err != nil {
		t.Fatal(err)
	}
	rec.Partition, rec.Offset = 0, 7
	opts := ConsumerOptions{}
	opts.setDefaults()
	c := &kconsumer{k: b.kafka, name: "twice", opts: opts, log: opts.Logger}
	for range 2 {
		j := &job{rec: rec}
		c.deadLetter(ctx, j, 3, errors.New("boom"))
		if j.out != parked {
			t.Fatal("the record was not parked")
		}
	}
	dls, err := b.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Event.ID != e.ID || dls[0].Consumer != "twice" || dls[0].Attempts != 3 || dls[0].Error != "boom" {
		t.Fatalf("dead letters = %+v, want the one event once", dls)
	}
	if err := b.Replay(ctx, dls[0].Seq); err != nil {
		t.Fatal(err)
	}
	if dls, err := b.DeadLetters(ctx); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the replay = %+v, %v; want none", dls, err)
	}
	if err := b.Replay(ctx, dls[0].Seq); err == nil {
		t.Error("replaying a dead letter a second time succeeded, want an error")
	}
}
