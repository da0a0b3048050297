// Package natstest runs NATS servers as separate processes for tests: a JetStream cluster of
// nats-server processes on loopback, built from the nats-server module this module already
// depends on (the embedded bus's), so the external servers are the same code as the embedded
// one. A test can kill a node with SIGKILL and start it again on the same ports and store,
// and ask which node leads a stream.
//
// It is for tests only; nothing in a ficus binary imports it.
package natstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyWithin bounds how long a node may take to accept clients, and a cluster to elect its
// JetStream meta leader.
const readyWithin = 30 * time.Second

// Build builds nats-server from the module graph into dir and returns the binary's path.
// It takes some seconds the first time and is cached by the go command after that.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

// Cluster is a JetStream cluster of nats-server processes on loopback.
type Cluster struct {
	bin   string
	dir   string
	name  string
	nodes []*node
}

// node is one nats-server of a cluster.
type node struct {
	name            string
	port, routePort int
	conf            string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// StartCluster starts an n-node JetStream cluster of the nats-server binary bin (Build), its
// stores under t.TempDir(), and waits until every node accepts clients and JetStream has a
// meta leader. The nodes are killed when the test ends.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d nodes", n)
	}
	c := &Cluster{bin: bin, dir: t.TempDir(), name: "ficus-test"}
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[2*i+1]))
	}
	for i := range n {
		nd := &node{name: fmt.Sprintf("n%d", i), port: ports[2*i], routePort: ports[2*i+1]}
		nd.conf = filepath.Join(c.dir, nd.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 4GB
}
cluster {
  name: %s
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, nd.name, nd.port, filepath.Join(c.dir, nd.name), c.name, nd.routePort, strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(t, i)
		}
	})
	for i := range c.nodes {
		c.Start(t, i)
	}
	c.waitForMetaLeader(t)
	return c
}

// freePorts returns n loopback ports nothing listened on a moment ago. A node's ports must be
// known before any node starts (each names the others' route ports), so they cannot be
// handed over as bound sockets.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// URL is the client URL of every node, comma-separated, as events.bus takes it.
func (c *Cluster) URL() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return strings.Join(urls, ",")
}

// NodeURL is the client URL of node i alone.
func (c *Cluster) NodeURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].port) }

// Name is the server name of node i, as stream and consumer infos report leaders.
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index returns the index of the node whose server name is name, or -1.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// Start starts node i (again, after Kill: same ports, same store) and waits until it accepts
// clients.
func (c *Cluster) Start(t testing.TB, i int) {
	t.Helper()
	nd := c.nodes[i]
	nd.mu.Lock()
	if nd.cmd != nil {
		nd.mu.Unlock()
		t.Fatalf("natstest: node %s is already running", nd.name)
	}
	nd.out = &bytes.Buffer{}
	cmd := exec.Command(c.bin, "-c", nd.conf)
	cmd.Stdout, cmd.Stderr = lockedWriter{&nd.mu, nd.out}, lockedWriter{&nd.mu, nd.out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		nd.mu.Unlock()
		t.Fatalf("natstest: starting node %s: %v", nd.name, err)
	}
	done := make(chan struct{})
	nd.cmd, nd.done = cmd, done
	nd.mu.Unlock()
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(readyWithin)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("natstest: node %s exited at start:\n%s", nd.name, c.Output(i))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: node %s not accepting clients after %s:\n%s", nd.name, readyWithin, c.Output(i))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// Kill kills node i with SIGKILL and waits until it is gone. Killing a stopped node does
// nothing.
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	nd := c.nodes[i]
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Running reports whether node i runs.
func (c *Cluster) Running(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// Output is what node i printed since it last started.
func (c *Cluster) Output(i int) string {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.out == nil {
		return ""
	}
	return nd.out.String()
}

// connect connects to the running nodes.
func (c *Cluster) connect() (*nats.Conn, error) {
	var urls []string
	for i, nd := range c.nodes {
		if c.Running(i) {
			urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("no node is running")
	}
	return nats.Connect(strings.Join(urls, ","), nats.Name("natstest"), nats.Timeout(2*time.Second))
}

// StreamLeader returns the index of the node that leads stream, waiting (up to 30s) while
// the stream has no leader, as during an election.
func (c *Cluster) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	nc, err := c.connect()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(readyWithin)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var info *jetstream.StreamInfo
		s, err := js.Stream(ctx, stream)
		if err == nil {
			info, err = s.Info(ctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			if i := c.Index(info.Cluster.Leader); i >= 0 {
				return i
			}
			err = fmt.Errorf("leader %q is not a node of this cluster", info.Cluster.Leader)
		}
		last = err
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	t.Fatalf("natstest: stream %s has no leader after %s: %v", stream, readyWithin, last)
	return -1
}

// waitForMetaLeader waits until JetStream answers account requests: the cluster elected its
// meta leader, so streams can be created.
func (c *Cluster) waitForMetaLeader(t testing.TB) {
	t.Helper()
	nc, err := c.connect()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(readyWithin)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: JetStream not ready after %s: %v\n%s", readyWithin, err, c.Output(0))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// lockedWriter writes to w holding mu, so Output can read while the process writes.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
