package bus

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ficus-project/ficus/platform/config"
)

// kafkaServer is a Kafka cluster of franz-go's kfake, in the test process, listening on
// loopback. It keeps its data in a directory, so that Stop and Start take the bus down and
// bring it back, on the same ports, with what it held.
type kafkaServer struct {
	brokers int
	dir     string
	ports   []int
	c       *kfake.Cluster
	conns   *connTracker
}

// connTracker records the connections kfake accepts. Closing kfake closes its listeners but
// not the connections it has open; a broker process that dies closes them all, and Stop does
// that too, so that clients see a stopped cluster as they would see dead brokers.
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
		conn.Close()
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

// newKafka starts a 3-broker kfake cluster, stopped when the test ends.
func newKafka(t *testing.T) testServer {
	t.Helper()
	s := &kafkaServer{brokers: 3, dir: filepath.Join(t.TempDir(), "kafka")}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *kafkaServer) Events() config.Events {
	var addrs []string
	for _, p := range s.ports {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return config.Events{Bus: "kafka://" + strings.Join(addrs, ",")}
}

func (s *kafkaServer) Start(t *testing.T) {
	t.Helper()
	if s.c != nil {
		return
	}
	s.conns = &connTracker{}
	opts := []kfake.Opt{kfake.NumBrokers(s.brokers), kfake.DataDir(s.dir), kfake.ListenFn(s.conns.listen)}
	if s.ports != nil {
		opts = append(opts, kfake.Ports(s.ports...))
	} else {
		opts = append(opts, kfake.Ports(make([]int, s.brokers)...)) // 0: any free port
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	s.c = c
	if s.ports == nil {
		for _, a := range c.ListenAddrs() {
			i := strings.LastIndex(a, ":")
			p, err := strconv.Atoi(a[i+1:])
			if err != nil {
				t.Fatalf("kfake address %q: %v", a, err)
			}
			s.ports = append(s.ports, p)
		}
	}
}

func (s *kafkaServer) Stop(t *testing.T) {
	t.Helper()
	if s.c == nil {
		return
	}
	s.c.Close()
	s.conns.closeAll()
	s.c = nil
}

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
	srv.c.ApplyRetention()
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
