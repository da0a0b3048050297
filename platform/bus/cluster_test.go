package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus/natstest"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// clusterServer is a 3-node JetStream cluster of nats-server processes that several tests
// share: starting one takes seconds, so each test gets it with its streams deleted instead.
// Stop kills every node with SIGKILL; Start brings them back on their ports and stores.
type clusterServer struct {
	c *natstest.Cluster
}

// startCluster starts the cluster the tests of t share; it is killed when t ends.
func startCluster(t testing.TB) *clusterServer {
	t.Helper()
	bin, err := natsServerBin()
	if err != nil {
		t.Fatal(err)
	}
	return &clusterServer{c: natstest.StartCluster(t, bin, 3)}
}

// fresh brings every node up and empties the streams and deletes their consumers, so that the
// next test starts from nothing, as it would on a new server. (Deleting the streams instead
// would have the cluster elect new leaders for each test.)
func (s *clusterServer) fresh(t testing.TB) testServer {
	t.Helper()
	s.Start(t)
	nc, err := nats.Connect(s.c.URL(), nats.Name("ficus-test-reset"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(settle)
	for _, name := range []string{EventsStream, DLQStream} {
		for {
			err := reset(js, name)
			if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("emptying stream %s: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval while the cluster elects leaders
		}
	}
	return s
}

// reset empties stream name and deletes its consumers.
func reset(js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	names := st.ConsumerNames(ctx)
	for c := range names.Name() {
		if err := st.DeleteConsumer(ctx, c); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
	}
	if err := names.Err(); err != nil {
		return err
	}
	return st.Purge(ctx)
}

// Events names every node; the streams take their default limits, which each node must be
// able to reserve (natstest gives them 4GB).
func (s *clusterServer) Events() config.Events { return config.Events{Bus: s.c.URL()} }

// Start starts every node that is not running.
func (s *clusterServer) Start(t testing.TB) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range s.c.Size() {
		if !s.c.Running(i) {
			// Started together, the nodes find each other at once; one by one, each waits
			// for a quorum that is not there yet.
			wg.Go(func() { s.c.Start(t, i) })
		}
	}
	wg.Wait()
}

// Stop kills every node.
func (s *clusterServer) Stop(t testing.TB) {
	t.Helper()
	for i := range s.c.Size() {
		s.c.Kill(t, i)
	}
}

// TestCluster runs the contract suite on a 3-node JetStream cluster of separate nats-server
// processes, with the streams replicated on all three (events.replicas defaults to 3 for a
// URL listing three servers).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node nats-server cluster")
	}
	cluster := startCluster(t)
	runSuite(t, cluster.fresh)
	t.Run("LeaderKilledMidStream", func(t *testing.T) { testLeaderKilled(t, cluster) })
	t.Run("StreamsReplicated", func(t *testing.T) {
		srv := cluster.fresh(t)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		b := connect(t, ctx, srv)
		for _, name := range []string{EventsStream, DLQStream} {
			s, err := b.nats.js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				t.Errorf("%s: replicas %d, cluster %+v; want 3 copies (a leader and 2 followers)", name, info.Config.Replicas, info.Cluster)
			}
		}
	})
}

// timedPublisher publishes through a real bus and records when each successful publish began
// and ended, so that a test can tell when publishing resumed after a failure.
type timedPublisher struct {
	inner *Bus
	mu    sync.Mutex
	ok    []publishSpan
	fails int
}

type publishSpan struct{ began, ended time.Time }

func (p *timedPublisher) Publish(ctx context.Context, evs ...event.Event) error {
	began := time.Now()
	err := p.inner.Publish(ctx, evs...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.fails++
		return err
	}
	p.ok = append(p.ok, publishSpan{began, time.Now()})
	return nil
}

// resumedAfter returns when the first publish that began after t succeeded, and whether one
// has, with the number of failed publishes so far.
func (p *timedPublisher) resumedAfter(t time.Time) (time.Time, bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.ok {
		if s.began.After(t) {
			return s.ended, true, p.fails
		}
	}
	return time.Time{}, false, p.fails
}

// testLeaderKilled: while a steady flow of events goes from an outbox through the relay to an
// idempotent consumer, the node leading the events stream is killed with SIGKILL. Publishing
// resumes within resumeBound, and in the end the consumer has applied every event once, the
// stream holds each once, and nothing else.
func testLeaderKilled(t *testing.T, cluster *clusterServer) {
	const (
		before, after = 300, 300 // events flowing before the kill, and after publishing resumed
		// resumeBound is what a client waits at most: the cluster elects a new leader within
		// a few seconds, and a publish sent to the dead one fails after the publish timeout.
		publishTimeout = 2 * time.Second
		resumeBound    = publishTimeout + 8*time.Second
	)
	srv := cluster.fresh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	db := openDB(t, ctx, "producer.db")
	cdb := openDB(t, ctx, "consumer.db")
	pub := &timedPublisher{inner: connectWith(t, ctx, srv, Options{Name: "relay", PublishTimeout: publishTimeout})}
	relay := outbox.NewRelay(db, pub, fastRelay())
	runRelay(t, ctx, relay)
	var mu sync.Mutex
	deliveries := map[string]int{}
	apply := applyHandler(cdb, "follower")
	runConsumer(t, ctx, connect(t, ctx, srv), "follower", func(ctx context.Context, e event.Event) error {
		mu.Lock()
		deliveries[e.ID]++
		mu.Unlock()
		return apply(ctx, e)
	}, ConsumerOptions{Types: []string{"test.failover.v1"}, AckWait: 5 * time.Second})

	// The writer records an event every 2ms, as a shop taking orders would, until stopped.
	var written atomic.Int64
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			e, err := event.New("/test", "test.failover.v1", fmt.Sprint("order-", i%97), map[string]int{"i": i})
			if err == nil {
				err = store.Write(wctx, db, func(ctx context.Context, tx *gorm.DB) error { return outbox.Add(ctx, tx, e) })
			}
			if err != nil {
				if wctx.Err() == nil {
					t.Errorf("recording event %d: %v", i, err)
				}
				return
			}
			written.Add(1)
			relay.Notify()
		}
	}()
	t.Cleanup(func() { stopWriter(); <-writerDone })

	waitFor(t, settle, fmt.Sprint(before, " events applied before the kill"), func() bool { n, _ := applied(t, cdb); return n >= before })
	leader := cluster.c.StreamLeader(t, EventsStream)
	killed := time.Now()
	cluster.c.Kill(t, leader)
	t.Logf("killed %s, the leader of %s, after %d events", cluster.c.Name(leader), EventsStream, written.Load())

	var resumed time.Time
	waitFor(t, resumeBound, "publishing to resume after the leader was killed", func() bool {
		var ok bool
		resumed, ok, _ = pub.resumedAfter(killed)
		return ok
	})
	_, _, fails := pub.resumedAfter(killed)
	newLeader := cluster.c.StreamLeader(t, EventsStream)
	t.Logf("publishing resumed %s after the kill (%d publishes failed meanwhile); %s leads now",
		resumed.Sub(killed).Round(time.Millisecond), fails, cluster.c.Name(newLeader))
	if newLeader == leader {
		t.Errorf("the killed node %s leads %s again", cluster.c.Name(leader), EventsStream)
	}
	mark := written.Load()
	waitFor(t, settle, fmt.Sprint(after, " more events applied after publishing resumed"), func() bool {
		n, _ := applied(t, cdb)
		return n >= mark+after
	})
	stopWriter()
	<-writerDone
	total := written.Load()
	waitFor(t, settle, "outbox drained", func() bool { return backlog(t, ctx, db) == 0 })
	waitFor(t, settle, "every event applied", func() bool { n, _ := applied(t, cdb); return n == total },
		func() string { n, _ := applied(t, cdb); return fmt.Sprintf("%d of %d applied", n, total) })
	if _, twice := applied(t, cdb); twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
	mu.Lock()
	redelivered := 0
	for _, n := range deliveries {
		if n > 1 {
			redelivered++
		}
	}
	if len(deliveries) != int(total) {
		t.Errorf("the consumer received %d distinct events, want the %d written", len(deliveries), total)
	}
	mu.Unlock()
	b := connect(t, ctx, srv)
	checkStored(t, ctx, b, "test.failover.v1", int(total))
	t.Logf("%d events written, applied once each (%d delivered more than once, dropped by the inbox)", total, redelivered)
}
