// Package kafkatest runs a Kafka cluster of franz-go's kfake for tests, in the test's own
// process, listening on loopback. It keeps its data in a directory, so that Stop and Start take
// the whole cluster down and bring it back, on the same ports, with what it held; and it can
// move a partition's leadership to another broker, as a broker failure would. kfake cannot
// kill a single broker: every broker is the same process.
//
// It is for tests only; nothing in a ficus binary imports it.
package kafkatest

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a kfake cluster that can be stopped and started again on the same ports.
type Cluster struct {
	brokers int
	dir     string

	mu    sync.Mutex
	ports []int
	c     *kfake.Cluster // nil while stopped
	conns *connTracker
}

// StartCluster starts a kfake cluster of n brokers on loopback, its data under t.TempDir(),
// stopped when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{brokers: n, dir: filepath.Join(t.TempDir(), "kafka")}
	c.Start(t)
	t.Cleanup(func() { c.Stop(t) })
	return c
}

// URL is the bootstrap address of every broker, as events.bus takes it: kafka://a,b,c.
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := make([]string, 0, len(c.ports))
	for _, p := range c.ports {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return "kafka://" + strings.Join(addrs, ",")
}

// Size is the number of brokers.
func (c *Cluster) Size() int { return c.brokers }

// Kfake is the running kfake cluster, for what this package does not wrap; nil while stopped.
func (c *Cluster) Kfake() *kfake.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

// Start starts the cluster, on the ports it had before if it ran before, with the data it
// held. It does nothing when the cluster runs.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return
	}
	c.conns = &connTracker{}
	opts := []kfake.Opt{kfake.NumBrokers(c.brokers), kfake.DataDir(c.dir), kfake.ListenFn(c.conns.listen)}
	if c.ports != nil {
		opts = append(opts, kfake.Ports(c.ports...))
	} else {
		opts = append(opts, kfake.Ports(make([]int, c.brokers)...)) // 0: any free port
	}
	k, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	c.c = k
	if c.ports == nil {
		for _, a := range k.ListenAddrs() {
			i := strings.LastIndex(a, ":")
			p, err := strconv.Atoi(a[i+1:])
			if err != nil {
				t.Fatalf("kfake address %q: %v", a, err)
			}
			c.ports = append(c.ports, p)
		}
	}
}

// Stop stops the cluster: its listeners and every connection it accepted are closed, so that
// clients see it as they would see dead brokers. Its data stays for Start. It does nothing
// when the cluster is stopped.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return
	}
	c.c.Close()
	c.conns.closeAll()
	c.c = nil
}

// LeaderFor returns the broker leading the partition of topic, or -1 when there is no such
// partition or the cluster is stopped.
func (c *Cluster) LeaderFor(topic string, partition int32) int32 {
	if k := c.Kfake(); k != nil {
		return k.LeaderFor(topic, partition)
	}
	return -1
}

// MoveLeader makes broker node the leader of the partition of topic, as a broker failure
// would move it: clients of the old leader are told it no longer leads and must find the
// new one.
func (c *Cluster) MoveLeader(topic string, partition, node int32) error {
	k := c.Kfake()
	if k == nil {
		return fmt.Errorf("moving %s/%d to broker %d: the cluster is stopped", topic, partition, node)
	}
	if err := k.MoveTopicPartition(topic, partition, node); err != nil {
		return fmt.Errorf("moving %s/%d to broker %d: %w", topic, partition, node, err)
	}
	return nil
}

// connTracker records the connections kfake accepts. Closing kfake closes its listeners but
// not the connections it has open; a broker process that dies closes them all, and Stop does
// that too.
type connTracker struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (c *connTracker) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return trackingListener{ln, c}, nil
}

func (c *connTracker) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

type trackingListener struct {
	net.Listener
	t *connTracker
}

func (l trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.t.mu.Lock()
		l.t.conns = append(l.t.conns, conn)
		l.t.mu.Unlock()
	}
	return conn, err
}
