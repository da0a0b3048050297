package retention_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/retention"
	"github.com/ficus-project/ficus/platform/store"
)

// TestSteadyState runs the whole event path with real parts (keyed POSTs through the
// idempotency middleware, the outbox and its relay, an embedded JetStream bus with a small
// size limit, a consumer with an inbox) and a pruner on each database, for rounds of orders an
// hour apart on an injected clock. With a retention of three hours, every platform table holds
// the last four rounds once three have passed, and no more however many rounds follow; the
// stream stays within its size; and every event is still applied exactly once.
func TestSteadyState(t *testing.T) {
	const (
		rounds   = 10
		perRound = 20
		keep     = 3 * time.Hour
		step     = time.Hour
		maxBytes = 32 << 10
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }

	// The bus, bounded to 32KiB: room for far fewer than the 200 events.
	events := config.Events{
		Bus:      "embedded",
		Embedded: config.Embedded{Listen: "127.0.0.1:0", Store: filepath.Join(t.TempDir(), "nats")},
		Stream:   config.StreamLimits{MaxAge: config.Duration(time.Hour), MaxBytes: maxBytes},
	}
	events.Embedded.Listen = serveBus(t, events)
	b, err := bus.Connect(ctx, events, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	// The producer: a keyed POST records an order and its event in one transaction.
	pdb := openStore(t, "producer.db", outbox.Migrate, idempotency.Migrate)
	if err := pdb.Exec(`CREATE TABLE test_orders (id TEXT PRIMARY KEY)`).Error; err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.POST("/orders", func(c echo.Context) error {
		id := c.Request().Header.Get(idempotency.Header)
		err := store.Write(c.Request().Context(), pdb, func(ctx context.Context, tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO test_orders (id) VALUES (?)`, id).Error; err != nil {
				return err
			}
			return outbox.Record(ctx, tx, "/test", "test.order_placed.v1", id, map[string]string{"id": id})
		})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, map[string]string{"id": id})
	}, idempotency.Middleware(pdb, idempotency.Options{Now: now}))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	relay := outbox.NewRelay(pdb, b, outbox.RelayOptions{PollInterval: 5 * time.Millisecond, Now: now})
	store.OnCommit(pdb, relay.Notify)
	runUntilCleanup(t, ctx, relay.Run)

	// The consumer: its inbox takes its clock from the database handle.
	cdb := openStore(t, "consumer.db", inbox.Migrate)
	cdb.Config.NowFunc = now
	if err := cdb.Exec(`CREATE TABLE test_applied (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`).Error; err != nil {
		t.Fatal(err)
	}
	h := inbox.Handler(cdb, "steady", func(_ context.Context, tx *gorm.DB, e event.Event) error {
		return tx.Exec(`INSERT INTO test_applied (id, n) VALUES (?, 1)
			ON CONFLICT (id) DO UPDATE SET n = test_applied.n + 1`, e.Subject).Error
	})
	runUntilCleanup(t, ctx, func(ctx context.Context) error { return b.Consume(ctx, "steady", h, bus.ConsumerOptions{}) })

	// Small batches, so every round takes several.
	popts := retention.Options{BatchSize: 7, MaxBatches: 100, Now: now}
	producer := retention.NewPruner(pdb, popts, outbox.PruneRule(keep), idempotency.PruneRule(keep))
	consumer := retention.NewPruner(cdb, popts, inbox.PruneRule(keep))

	tables := []struct {
		db   *gorm.DB
		name string
	}{{pdb, outbox.Table}, {pdb, "ficus_idempotency"}, {cdb, inbox.Table}}
	for r := range rounds {
		for i := range perRound {
			key := fmt.Sprintf("order-%d-%d", r, i)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader("{}"))
			req.Header.Set(idempotency.Header, key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("POST %s: %d", key, resp.StatusCode)
			}
		}
		applied := int64((r + 1) * perRound)
		waitUntil(t, fmt.Sprintf("round %d relayed and applied", r), func() bool {
			n, _, err := outbox.Backlog(ctx, pdb)
			if err != nil {
				t.Fatal(err)
			}
			return n == 0 && rows(t, cdb, "test_applied") == applied
		})
		for _, p := range []*retention.Pruner{producer, consumer} {
			if _, err := p.Round(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Rows stamped at the cutoff stay: this round and the three before it.
		want := int64(min(r+1, 4) * perRound)
		for _, tb := range tables {
			if n := rows(t, tb.db, tb.name); n != want {
				t.Errorf("round %d: %s holds %d rows, want %d", r, tb.name, n, want)
			}
		}
		info := eventsUsage(t, ctx, b)
		if info.Bytes > maxBytes {
			t.Errorf("round %d: the stream holds %d bytes, over its %d limit", r, info.Bytes, maxBytes)
		}
		clock.Add(int64(step))
	}
	if info := eventsUsage(t, ctx, b); info.Msgs >= rounds*perRound {
		t.Errorf("the stream holds all %d events, want the oldest dropped for room", info.Msgs)
	}
	var twice int64
	if err := cdb.Raw(`SELECT COUNT(*) FROM test_applied WHERE n > 1`).Scan(&twice).Error; err != nil {
		t.Fatal(err)
	}
	if twice != 0 {
		t.Errorf("%d events applied twice", twice)
	}
}

// serveBus runs an embedded bus for the test and returns its address.
func serveBus(t *testing.T, cfg config.Events) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- bus.ServeEmbedded(ctx, cfg, nil, nil, func(addr string) { ready <- addr }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("embedded bus still running 10s after it was stopped")
		}
	})
	select {
	case addr := <-ready:
		return addr
	case err := <-done:
		t.Fatalf("embedded bus: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("embedded bus not ready after 10s")
	}
	return ""
}

// openStore opens a SQLite database in the test's directory with the given migrations.
func openStore(t *testing.T, name string, migrations ...func(context.Context, *gorm.DB) error) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), name), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	for _, m := range migrations {
		if err := m(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// runUntilCleanup runs fn in the background until the test ends.
func runUntilCleanup(t *testing.T, ctx context.Context, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("still running 10s after the test ended")
		}
	})
}

// waitUntil polls cond until it holds, for 10s at most.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rows(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM ` + table).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// eventsUsage reads what the events stream holds.
func eventsUsage(t *testing.T, ctx context.Context, b *bus.Bus) bus.Usage {
	t.Helper()
	us, err := b.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Stream == bus.EventsStream {
			return u
		}
	}
	t.Fatal("no events stream")
	return bus.Usage{}
}
