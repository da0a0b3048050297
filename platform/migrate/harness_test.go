package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// settle bounds each wait of a test: far above what a passing step takes, so that a failing
// test fails fast rather than hangs.
const settle = 20 * time.Second

// testCtx is a context that ends with the test, or after a minute.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens a fresh database on the engine the test runs on, closed when the test ends.
func openDB(t *testing.T) (*gorm.DB, string) {
	t.Helper()
	dsn := storetest.DSN(t)
	db, err := store.Open(testCtx(t), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	return db, dsn
}

// createSchema gives db the capability's tables as the module's migrations create them (a
// copy under testdata/): the service's own migrations will replace it once it exists.
func createSchema(t *testing.T, db *gorm.DB, capability string) {
	t.Helper()
	if err := store.Migrate(testCtx(t), db, capability, os.DirFS("testdata"), capability); err != nil {
		t.Fatal(err)
	}
}

// pair is a monolith database and a service database with a capability's schema, and the
// migration between them.
type pair struct {
	mono, svc       Side
	spec            Spec
	monoDSN, svcDSN string
}

func newPair(t *testing.T, spec Spec) *pair {
	t.Helper()
	mono, monoDSN := openDB(t)
	svc, svcDSN := openDB(t)
	createSchema(t, mono, spec.Capability)
	createSchema(t, svc, spec.Capability)
	if err := outbox.Migrate(testCtx(t), mono); err != nil {
		t.Fatal(err)
	}
	return &pair{
		mono: Side{Name: "monolith", DB: mono, Identity: config.Redact(monoDSN)},
		svc:  Side{Name: "service", DB: svc, Identity: config.Redact(svcDSN)},
		spec: spec, monoDSN: monoDSN, svcDSN: svcDSN,
	}
}

// migration returns the pair's migration in dir.
func (p *pair) migration(t *testing.T, dir Direction, opts Options) *Migration {
	t.Helper()
	m, err := New(p.spec, dir, p.mono, p.svc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// exec runs statements on db, failing the test on error.
func mustExec(t *testing.T, db *gorm.DB, sql string, args ...any) {
	t.Helper()
	if err := db.Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// seedItems inserts n items SKU-000000… with 50 to 99 on hand, 500 to a statement.
func seedItems(t *testing.T, db *gorm.DB, from, n int) {
	t.Helper()
	now := time.Now().UTC()
	for start := from; start < from+n; start += 500 {
		var q strings.Builder
		q.WriteString("INSERT INTO inventory_items (sku, name, price_cents, on_hand, reserved, version, updated_at) VALUES ")
		var args []any
		for i := start; i < min(start+500, from+n); i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, 0, 1, ?)")
			args = append(args, sku(i), fmt.Sprintf("Item %d", i), int64(100+i), 50+i%50, now)
		}
		mustExec(t, db, q.String(), args...)
	}
}

func sku(i int) string { return fmt.Sprintf("SKU-%06d", i) }

// seedReservation holds qty of each sku for order.
func seedReservation(t *testing.T, db *gorm.DB, order string, qty int, skus ...string) {
	t.Helper()
	now := time.Now().UTC()
	mustExec(t, db, "INSERT INTO inventory_reservations (order_id, state, updated_at) VALUES (?, 'held', ?)", order, now)
	for _, s := range skus {
		mustExec(t, db, "UPDATE inventory_items SET reserved = reserved + ?, version = version + 1 WHERE sku = ?", qty, s)
		mustExec(t, db, "INSERT INTO inventory_reservation_lines (order_id, sku, quantity, unit_price_cents) VALUES (?, ?, ?, 100)", order, s, qty)
	}
}

// testBus is an embedded JetStream server in the test process and a client of it.
type testBus struct {
	*bus.Bus
	cfg config.Events
}

func newBus(t *testing.T) *testBus {
	t.Helper()
	cfg := config.Events{Bus: "embedded", Embedded: config.Embedded{Listen: "127.0.0.1:0", Store: filepath.Join(t.TempDir(), "nats")}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- bus.ServeEmbedded(ctx, cfg, nil, nil, func(addr string) { ready <- addr }) }()
	select {
	case addr := <-ready:
		cfg.Embedded.Listen = addr
	case err := <-done:
		t.Fatalf("embedded bus: %v", err)
	case <-time.After(settle):
		t.Fatal("embedded bus not ready")
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	cctx, ccancel := context.WithTimeout(context.Background(), settle)
	defer ccancel()
	b, err := bus.Connect(cctx, cfg, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &testBus{Bus: b, cfg: cfg}
}

// changeStock sets an item's stock in db, bumping its version, and publishes its
// stock_changed event from source, as the module (or the service) does.
func changeStock(t *testing.T, b *testBus, db *gorm.DB, source, s string, onHand int) {
	t.Helper()
	var it contract.StockChanged
	err := db.Raw(`UPDATE inventory_items SET on_hand = ?, version = version + 1, updated_at = ? WHERE sku = ?
		RETURNING sku, on_hand, reserved, version, name, price_cents`, onHand, time.Now().UTC(), s).
		Row().Scan(&it.SKU, &it.OnHand, &it.Reserved, &it.Version, &it.Name, &it.PriceCents)
	if err != nil {
		t.Fatalf("changing %s: %v", s, err)
	}
	publish(t, b, source, contract.TypeStockChanged, s, it)
}

func publish(t *testing.T, b *testBus, source, typ, subject string, data any) {
	t.Helper()
	ev, err := event.New(source, typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(testCtx(t), ev); err != nil {
		t.Fatal(err)
	}
}

// backfill runs a backfill that must succeed.
func backfill(t *testing.T, m *Migration, b Stream) BackfillResult {
	t.Helper()
	res, err := m.Backfill(testCtx(t), b, BackfillOptions{})
	if err != nil {
		t.Fatalf("backfill: %v", err)
	}
	return res
}

// syncUp runs a sync until it has caught up.
func syncUp(t *testing.T, m *Migration, b Events) SyncResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), settle)
	defer cancel()
	res, err := m.Sync(ctx, b, SyncOptions{UntilCaughtUp: true, Idle: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("sync: %v (%+v)", err, res)
	}
	return res
}

// mustBeClean verifies and fails the test with the report unless the sides match.
func mustBeClean(t *testing.T, m *Migration) Report {
	t.Helper()
	rep, err := m.Verify(testCtx(t), VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.Clean() {
		t.Fatalf("verify: %s\n%+v", rep.Summary(), rep.Tables)
	}
	return rep
}

// countRows counts a table's rows in db.
func countRows(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + table).Row().Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
