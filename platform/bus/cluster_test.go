package bus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/bus/natstest"
	"github.com/ficus-project/ficus/platform/config"
)

// clusterServer is a 3-node JetStream cluster of nats-server processes that several tests
// share: starting one takes seconds, so each test gets it with its streams deleted instead.
// Stop kills every node with SIGKILL; Start brings them back on their ports and stores.
type clusterServer struct {
	c *natstest.Cluster
}

// startCluster starts the cluster the tests of t share; it is killed when t ends.
func startCluster(t *testing.T) *clusterServer {
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
func (s *clusterServer) fresh(t *testing.T) testServer {
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

// Events names every node. A clustered JetStream reserves a stream's max_bytes on each node
// that keeps a copy, so the limits are the test nodes' size rather than the 1GiB default.
func (s *clusterServer) Events() config.Events {
	return config.Events{
		Bus:         s.c.URL(),
		Stream:      config.StreamLimits{MaxBytes: 64 << 20},
		DeadLetters: config.StreamLimits{MaxBytes: 16 << 20},
	}
}

// Start starts every node that is not running.
func (s *clusterServer) Start(t *testing.T) {
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
func (s *clusterServer) Stop(t *testing.T) {
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
	t.Run("StreamsReplicated", func(t *testing.T) {
		srv := cluster.fresh(t)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		b := connect(t, ctx, srv)
		for _, name := range []string{EventsStream, DLQStream} {
			s, err := b.js.Stream(ctx, name)
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
