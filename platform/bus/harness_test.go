package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
)

// Deadlines. Each step of a passing test takes well under a second, even with the race
// detector on a busy machine; these bound how long a failing test waits before it says so.
const (
	// settle bounds the wait for one thing to happen: a server to start, an outbox to drain,
	// an event to be applied.
	settle = 10 * time.Second
	// testTimeout bounds a whole subtest's context.
	testTimeout = 45 * time.Second
)

// server is a NATS JetStream server a test can stop and start again on the same port and
// store, to take the bus down and bring it back.
type testServer interface {
	// Events is the config clients connect with.
	Events() config.Events
	Start(t testing.TB)
	Stop(t testing.TB)
}

// embeddedServer runs ServeEmbedded in the test process, on a port it picks itself the first
// time and on the same port again after a Stop.
type embeddedServer struct {
	cfg    config.Events
	cancel context.CancelFunc
	done   chan error
}

func newEmbedded(t testing.TB) testServer {
	t.Helper()
	s := &embeddedServer{cfg: config.Events{
		Bus:      "embedded",
		Embedded: config.Embedded{Listen: "127.0.0.1:0", Store: filepath.Join(t.TempDir(), "nats")},
	}}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *embeddedServer) Events() config.Events { return s.cfg }

func (s *embeddedServer) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- ServeEmbedded(ctx, s.cfg, nil, nil, func(addr string) { ready <- addr }) }()
	select {
	case addr := <-ready:
		// Started again after a Stop, the server comes back on the same port.
		s.cfg.Embedded.Listen = addr
	case err := <-s.done:
		t.Fatalf("embedded bus: %v", err)
	case <-time.After(settle):
		t.Fatalf("embedded bus not ready after %s", settle)
	}
}

func (s *embeddedServer) Stop(t testing.TB) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("embedded bus: %v", err)
		}
	case <-time.After(settle):
		t.Errorf("embedded bus still running %s after it was stopped", settle)
	}
}

// externalServer runs a nats-server process built from the module graph.
type externalServer struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	out      *bytes.Buffer
}

// natsServerDir holds the nats-server binary the external tests build; TestMain removes it.
var natsServerDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ficus-nats-server")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	natsServerDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// natsServerBin builds nats-server from the module graph, once per test run.
var natsServerBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(natsServerDir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

func newExternal(t testing.TB) testServer {
	t.Helper()
	bin, err := natsServerBin()
	if err != nil {
		t.Fatal(err)
	}
	s := &externalServer{bin: bin, dir: filepath.Join(t.TempDir(), "js")}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *externalServer) Events() config.Events {
	return config.Events{Bus: fmt.Sprintf("nats://127.0.0.1:%d", s.port)}
}

// Start starts nats-server: on a port it picks itself the first time, on the same port again
// after a Stop.
func (s *externalServer) Start(t testing.TB) {
	t.Helper()
	port := -1 // nats-server's "pick a free port"
	if s.port != 0 {
		port = s.port
	}
	portsDir := t.TempDir()
	s.out = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", s.dir, "--ports_file_dir", portsDir)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting nats-server: %v", err)
	}
	// The server writes its ports file once it listens.
	portsFile := filepath.Join(portsDir, fmt.Sprintf("%s_%d.ports", filepath.Base(s.bin), s.cmd.Process.Pid))
	deadline := time.Now().Add(settle)
	for {
		if p, err := listeningPort(portsFile); err == nil {
			s.port = p
			return
		}
		if time.Now().After(deadline) {
			s.Stop(t) // Once the process is waited for, its output is all in s.out.
			t.Fatalf("nats-server not listening after %s: %s", settle, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listeningPort reads the client port from a nats-server ports file.
func listeningPort(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var ports struct{ Nats []string }
	if err := json.Unmarshal(b, &ports); err != nil || len(ports.Nats) == 0 {
		return 0, fmt.Errorf("ports file %s: %q", path, b)
	}
	u, err := url.Parse(ports.Nats[0])
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Port())
}

func (s *externalServer) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// connect connects to srv, closing the connection when the test ends.
func connect(t testing.TB, ctx context.Context, srv testServer) *Bus {
	t.Helper()
	return connectWith(t, ctx, srv, Options{Name: t.Name()})
}

// connectWith is connect with options.
func connectWith(t testing.TB, ctx context.Context, srv testServer, opts Options) *Bus {
	t.Helper()
	return connectTo(t, ctx, srv.Events(), opts)
}

// connectTo is connectWith with the client's events config.
func connectTo(t testing.TB, ctx context.Context, cfg config.Events, opts Options) *Bus {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	b, err := Connect(cctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// openDB opens a SQLite database in the test's directory with the outbox and inbox tables.
func openDB(t testing.TB, ctx context.Context, name string) *gorm.DB {
	t.Helper()
	return openDBAt(t, ctx, filepath.Join(t.TempDir(), name))
}

// openDBAt is openDB with the file's path.
func openDBAt(t testing.TB, ctx context.Context, path string) *gorm.DB {
	t.Helper()
	db, err := store.Open(ctx, "sqlite:"+path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`CREATE TABLE test_applied (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)`,
		`CREATE TABLE test_stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, version INTEGER NOT NULL)`,
	} {
		if err := db.Exec(stmt).Error; err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// apply records one application of e in test_applied; a second application shows as n = 2.
func apply(tx *gorm.DB, e event.Event) error {
	return tx.Exec(`INSERT INTO test_applied (event_id, n) VALUES (?, 1)
		ON CONFLICT (event_id) DO UPDATE SET n = n + 1`, e.ID).Error
}

// applied returns how many events test_applied holds and how many were applied more than once.
func applied(t testing.TB, db *gorm.DB) (total, twice int64) {
	t.Helper()
	if err := db.Raw(`SELECT COUNT(*) FROM test_applied`).Scan(&total).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Raw(`SELECT COUNT(*) FROM test_applied WHERE n > 1`).Scan(&twice).Error; err != nil {
		t.Fatal(err)
	}
	return total, twice
}

// waitFor polls cond until it holds or the timeout passes. On a timeout, the last result of
// explain, if given, says what was still wrong.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool, explain ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var why string
			for _, e := range explain {
				why += ": " + e()
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stored reads every event of type typ the events stream holds and returns how many there
// are and how many distinct ids they carry.
func stored(t testing.TB, ctx context.Context, b *Bus, typ string) (total, distinct int) {
	t.Helper()
	deadline := time.Now().Add(2 * settle)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		total, distinct, err := readStored(actx, b, typ)
		cancel()
		if err == nil {
			return total, distinct
		}
		// A cluster just started again may still be electing leaders, and a request sent
		// meanwhile may go unanswered: each attempt gets a few seconds.
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readStored(ctx context.Context, b *Bus, typ string) (total, distinct int, err error) {
	pos, err := b.Position(ctx)
	if err != nil {
		return 0, 0, err
	}
	if pos.Last < pos.First || pos.Last == 0 {
		return 0, 0, nil
	}
	ids := map[string]bool{}
	rctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	done := errors.New("done")
	err = b.Read(rctx, pos.First-1, ReadOptions{Idle: 50 * time.Millisecond}, func(_ context.Context, batch []Stored) error {
		for _, s := range batch {
			if s.Event.Type == typ {
				total++
				ids[s.Event.ID] = true
			}
			if s.Seq >= pos.Last {
				return done
			}
		}
		if len(batch) == 0 && rctx.Err() != nil {
			return rctx.Err()
		}
		return nil
	})
	if !errors.Is(err, done) {
		return 0, 0, fmt.Errorf("reading the stream up to %d: %v", pos.Last, err)
	}
	return total, len(ids), nil
}

// checkStored checks that the events stream holds want events of type typ, each once. A
// Kafka topic keeps an event published again a second time (consumers' inboxes drop it), so
// there it checks the distinct ids only.
func checkStored(t testing.TB, ctx context.Context, b *Bus, typ string, want int) {
	t.Helper()
	total, distinct := stored(t, ctx, b, typ)
	if distinct != want {
		t.Errorf("stream holds %d distinct %s events, want %d", distinct, typ, want)
	}
	if b.nats != nil && total != want {
		t.Errorf("stream holds %d %s events, want %d: duplicates were not dropped", total, typ, want)
	}
	if total != distinct {
		t.Logf("stream holds %d %s events for %d ids", total, typ, distinct)
	}
}

// metricValue returns the sum of the samples of the named counter in reg whose labels include
// the given ones.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// newEvent returns a test event of type typ about subject.
func newEvent(t testing.TB, typ, subject string, data any) event.Event {
	t.Helper()
	e, err := event.New("/test", typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// record adds evs to db's outbox, one transaction each.
func record(t testing.TB, ctx context.Context, db *gorm.DB, evs ...event.Event) {
	t.Helper()
	for _, e := range evs {
		err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error { return outbox.Add(ctx, tx, e) })
		if err != nil {
			t.Fatal(err)
		}
	}
}
