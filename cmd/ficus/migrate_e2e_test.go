package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	inventorysvc "github.com/ficus-project/ficus/extracted/inventory"
	paymentssvc "github.com/ficus-project/ficus/extracted/payments"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/monolith/payments"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestMigratePostgres runs the migrate command's tests with both databases on PostgreSQL.
func TestMigratePostgres(t *testing.T) {
	storetest.Postgres(t, TestMigrateBackfillSurvivesSIGKILL, TestMigrateSyncSurvivesSIGKILL)
}

// migrateFixture is what a ficus migrate test works on: a config.yaml naming a monolith
// database (migrated, its modules in this process), a service database with the service's
// schema, and an embedded bus in this process; the ficus migrate processes it starts read
// the config.
type migrateFixture struct {
	dir, cfgPath string
	mono         *monolith.Monolith
	svc          *gorm.DB // the inventory service's database
	pay          *gorm.DB // the payments service's database
	bus          *bus.Bus
	events       config.Events
}

func newMigrateFixture(t *testing.T) *migrateFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	events := config.Events{Bus: "embedded", Embedded: config.Embedded{Listen: "127.0.0.1:0", Store: filepath.Join(dir, "nats")}}
	bctx, stopBus := context.WithCancel(ctx)
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- bus.ServeEmbedded(bctx, events, nil, nil, func(addr string) { ready <- addr }) }()
	select {
	case events.Embedded.Listen = <-ready:
	case err := <-done:
		t.Fatalf("embedded bus: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("embedded bus not ready")
	}
	t.Cleanup(func() { stopBus(); <-done })

	monoDSN, svcDSN, payDSN := storetest.DSN(t), storetest.DSN(t), storetest.DSN(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`backends: { monolith: { url: http://127.0.0.1:1 } }
routes: [{ match: { path: / }, to: monolith }]
monolith: { database: '%s' }
services:
  inventory: { listen: 127.0.0.1:2, database: '%s' }
  payments: { listen: 127.0.0.1:3, database: '%s' }
events: { bus: embedded, embedded: { listen: %s, store: nats } }
`, monoDSN, svcDSN, payDSN, events.Embedded.Listen)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	mono, err := monolith.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mono.Close() })
	open := func(dsn string, schema func(context.Context, *gorm.DB) error) *gorm.DB {
		db, err := store.Open(ctx, dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close(db) })
		if err := schema(ctx, db); err != nil {
			t.Fatal(err)
		}
		return db
	}
	svc := open(svcDSN, inventorySchema)
	pay := open(payDSN, paymentsSchema)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	b, err := bus.Connect(cctx, events, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &migrateFixture{dir: dir, cfgPath: cfgPath, mono: mono, svc: svc, pay: pay, bus: b, events: events}
}

// inventorySchema and paymentsSchema create the extracted services' tables in db, with the
// services' own migrations (the outbox and the service's tables), as `ficus serve` does.
func inventorySchema(ctx context.Context, db *gorm.DB) error {
	return migrateAll(ctx, db, outbox.Migrate, inventorysvc.Migrate)
}

func paymentsSchema(ctx context.Context, db *gorm.DB) error {
	return migrateAll(ctx, db, outbox.Migrate, paymentssvc.Migrate)
}

func migrateAll(ctx context.Context, db *gorm.DB, migrations ...func(context.Context, *gorm.DB) error) error {
	for _, migrate := range migrations {
		if err := migrate(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// relay publishes db's outbox to the fixture's bus until the test ends, as the monolith's
// (or a service's) process does.
func (f *migrateFixture) relay(t *testing.T, db *gorm.DB, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(db, f.bus, outbox.RelayOptions{Name: name})
	store.OnCommit(db, r.Notify)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; store.OnCommit(db, nil) })
}

// ficus runs ficus migrate with args and the fixture's config, and returns its exit status
// and output.
func (f *migrateFixture) ficus(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(ficusBin, append(append([]string{"migrate"}, args...), "-c", f.cfgPath)...)
	out, err := cmd.CombinedOutput()
	return exitStatus(err), string(out)
}

// start starts ficus migrate with args and the fixture's config in the background.
func (f *migrateFixture) start(t *testing.T, args ...string) *process {
	t.Helper()
	return startFicus(t, exec.Command(ficusBin, append(append([]string{"migrate"}, args...), "-c", f.cfgPath)...))
}

// mustMigrate runs ficus migrate and fails the test unless it exits 0.
func (f *migrateFixture) mustMigrate(t *testing.T, args ...string) string {
	t.Helper()
	status, out := f.ficus(t, args...)
	if status != 0 {
		t.Fatalf("ficus migrate %s: exit %d\n%s", strings.Join(args, " "), status, out)
	}
	return out
}

// seedItems inserts n items straight into the monolith's table, 500 to a statement.
func (f *migrateFixture) seedItems(t *testing.T, n int) {
	t.Helper()
	now := time.Now().UTC()
	for start := 0; start < n; start += 500 {
		var q strings.Builder
		q.WriteString("INSERT INTO inventory_items (sku, name, price_cents, on_hand, reserved, version, updated_at) VALUES ")
		var args []any
		for i := start; i < min(start+500, n); i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, 0, 1, ?)")
			args = append(args, fmt.Sprintf("SKU-%06d", i), fmt.Sprintf("Item %d", i), int64(100+i), 1000, now)
		}
		if err := f.mono.DB.Exec(q.String(), args...).Error; err != nil {
			t.Fatal(err)
		}
	}
}

// copied reads how many rows of table the service's checkpoint says are copied, and how
// many the table holds; ok is false before the checkpoint exists.
func (f *migrateFixture) copied(table string) (checkpoint, rows int64, ok bool) {
	err := f.svc.Raw(`SELECT rows_copied FROM ficus_migrate_tables WHERE capability = 'inventory' AND direction = 'forward' AND tbl = ?`, table).
		Row().Scan(&checkpoint)
	if err != nil {
		return 0, 0, false
	}
	if err := f.svc.Raw("SELECT COUNT(*) FROM " + table).Row().Scan(&rows); err != nil {
		return 0, 0, false
	}
	return checkpoint, rows, true
}

// TestMigrateBackfillSurvivesSIGKILL: a backfill of 100,000 items, its process killed with
// SIGKILL half way, resumes after the last batch it committed and ends with verify clean.
func TestMigrateBackfillSurvivesSIGKILL(t *testing.T) {
	const items = 100_000
	f := newMigrateFixture(t)
	f.seedItems(t, items)
	p := f.start(t, "inventory", "backfill", "-batch", "1000")
	var killedAt int64
	for deadline := time.Now().Add(60 * time.Second); ; {
		if n, _, ok := f.copied("inventory_items"); ok && n >= items/2 {
			if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt = n
			break
		}
		select {
		case <-p.done:
			t.Fatalf("the backfill ended before it could be killed half way:\n%s", p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backfill never got half way:\n%s", p.out)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
	<-p.done
	checkpoint, rows, _ := f.copied("inventory_items")
	if rows != checkpoint || rows < killedAt || rows >= items {
		t.Fatalf("after SIGKILL the service holds %d items and its checkpoint says %d (seen %d before the kill); want equal and short of %d", rows, checkpoint, killedAt, items)
	}
	out := f.mustMigrate(t, "inventory", "backfill")
	want := fmt.Sprintf("backfill done (resumed): %s rows", grouped(items-rows))
	if !strings.Contains(out, want) || !strings.Contains(out, "100,000 rows copied") {
		t.Errorf("resumed backfill says:\n%s\nwant %q and the items' total", out, want)
	}
	out = f.mustMigrate(t, "inventory", "verify")
	if !strings.Contains(out, "verify inventory: clean: 100000 rows in 3 tables match") {
		t.Errorf("verify after the resumed backfill:\n%s", out)
	}
	t.Logf("killed at %d of %d rows; resumed:\n%s", rows, items, out)
}

// TestMigrateSyncSurvivesSIGKILL: 5,000 random stock changes in the monolith (restocks,
// reservations held, committed, released, returned) while ficus migrate sync runs, killed
// with SIGKILL half way and started again, end with verify clean.
func TestMigrateSyncSurvivesSIGKILL(t *testing.T) {
	const changes, skus = 5000, 40
	f := newMigrateFixture(t)
	f.relay(t, f.mono.DB, "monolith")
	ctx := context.Background()
	for i := range skus {
		onHand := 1000
		price := int64(100 + i)
		if _, err := f.mono.Inventory.CreateItem(ctx, inventory.NewItem{SKU: fmt.Sprintf("SKU-%02d", i), Name: "item", PriceCents: &price, OnHand: &onHand}); err != nil {
			t.Fatal(err)
		}
	}
	f.mustMigrate(t, "inventory", "backfill")
	// The inventory service runs on the copy, as a real process, and is killed with the sync.
	ports := holdPorts(t, "inventory")
	service := f.serveInventory(t, ports)
	first := f.start(t, "inventory", "sync", "-reconcile", "100ms")
	first.out.waitFor(t, "sync inventory: monolith", 20*time.Second)

	var done sync.WaitGroup
	var mu sync.Mutex
	made := 0
	killed := make(chan struct{})
	var second *process
	errs := make(chan error, 4)
	for w := range 4 {
		done.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var held, committed []string
			for {
				mu.Lock()
				if made == changes/2 {
					// Half way: kill the sync and the service, and start them again.
					for _, p := range []*process{first, service} {
						if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
							errs <- err
						}
					}
					close(killed)
				}
				if made >= changes {
					mu.Unlock()
					return
				}
				made++
				n := made
				mu.Unlock()
				if err := randomChange(ctx, f.mono.Inventory, rng, fmt.Sprintf("o-%d-%d", w, n), skus, &held, &committed); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	<-killed
	<-first.done
	<-service.done
	second = f.start(t, "inventory", "sync", "-reconcile", "100ms")
	f.serveInventory(t, ports)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The restarted sync catches up by itself: its position reaches the last stock event.
	last, err := f.bus.LastOf(ctx, []string{contract.TypeStockChanged})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		var to int64
		f.svc.Raw("SELECT synced_to FROM ficus_migrate_runs WHERE capability = 'inventory'").Row().Scan(&to)
		n, _, _ := outbox.Backlog(ctx, f.mono.DB)
		if n == 0 && uint64(to) >= last {
			if l, _ := f.bus.LastOf(ctx, []string{contract.TypeStockChanged}); l == last {
				break
			}
			last, _ = f.bus.LastOf(ctx, []string{contract.TypeStockChanged})
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted sync reached stream sequence %d of %d within a minute:\n%s", to, last, second.out)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if err := second.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if status := second.wait(t, 20*time.Second); status != 0 {
		t.Fatalf("sync stopped with Ctrl-C: exit %d\n%s", status, second.out)
	}
	second.out.waitFor(t, "sync inventory: stopped; it resumes from stream sequence", time.Second)
	out := f.mustMigrate(t, "inventory", "sync", "-until-caught-up", "-deadline", "60s")
	if !strings.Contains(out, "caught up") {
		t.Errorf("sync -until-caught-up:\n%s", out)
	}
	if out := f.mustMigrate(t, "inventory", "verify"); !strings.Contains(out, "clean") {
		t.Errorf("verify:\n%s", out)
	}
	// The restarted service serves the synced stock.
	for i := range skus {
		sku := fmt.Sprintf("SKU-%02d", i)
		want, err := f.mono.Inventory.Item(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + ports.addr("inventory") + "/api/inventory/items/" + sku)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ OnHand, Reserved int }
		err = json.NewDecoder(resp.Body).Decode(&struct {
			OnHand   *int `json:"on_hand"`
			Reserved *int `json:"reserved"`
		}{&got.OnHand, &got.Reserved})
		resp.Body.Close()
		if err != nil || got.OnHand != want.OnHand || got.Reserved != want.Reserved {
			t.Errorf("the service's %s: %+v (%v); the monolith's: on_hand %d, reserved %d", sku, got, err, want.OnHand, want.Reserved)
		}
	}
}

// serveInventory starts `ficus serve inventory` on the fixture's service database, on the
// held port, and waits until it is ready.
func (f *migrateFixture) serveInventory(t *testing.T, ports *heldPorts) *process {
	t.Helper()
	cmd := exec.Command(ficusBin, "serve", "inventory", "-c", f.cfgPath)
	ports.pass(cmd)
	p := startFicus(t, cmd)
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := client.Get("http://" + ports.addr("inventory") + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ficus serve inventory not ready within 20s:\n%s", p.out)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// randomChange makes one random stock change through the inventory module: a restock, or a
// reservation held, committed, released or returned. A change the stock refuses is no error.
func randomChange(ctx context.Context, inv *inventory.Service, rng *rand.Rand, order string, skus int, held, committed *[]string) error {
	pick := func() string { return fmt.Sprintf("SKU-%02d", rng.IntN(skus)) }
	var err error
	switch k := rng.IntN(10); {
	case k < 3:
		_, err = inv.Restock(ctx, pick(), 1+rng.IntN(5))
	case k < 6 || len(*held) == 0:
		lines := []inventory.Line{{SKU: pick(), Quantity: 1 + rng.IntN(3)}}
		if other := pick(); other != lines[0].SKU {
			lines = append(lines, inventory.Line{SKU: other, Quantity: 1})
		}
		if _, err = inv.Reserve(ctx, inventory.NewReservation{OrderID: order, Lines: lines}); err == nil {
			*held = append(*held, order)
		}
	case k < 8:
		id := (*held)[0]
		*held = (*held)[1:]
		if _, err = inv.Commit(ctx, id); err == nil {
			*committed = append(*committed, id)
		}
	case k < 9:
		id := (*held)[0]
		*held = (*held)[1:]
		_, err = inv.Release(ctx, id)
	default:
		if len(*committed) == 0 {
			return nil
		}
		id := (*committed)[0]
		*committed = (*committed)[1:]
		_, err = inv.Return(ctx, id)
	}
	if errors.Is(err, inventory.ErrInsufficientStock) || errors.Is(err, inventory.ErrStockLimit) {
		return nil
	}
	return err
}

// serviceWrite changes an item's stock in the service's database and records its event with
// the service's source, as the inventory service does when it owns the writes.
func (f *migrateFixture) serviceWrite(t *testing.T, sku string, delta int) {
	t.Helper()
	err := store.Write(context.Background(), f.svc, func(ctx context.Context, tx *gorm.DB) error {
		var it contract.StockChanged
		err := tx.Raw(`UPDATE inventory_items SET on_hand = on_hand + ?, version = version + 1, updated_at = ? WHERE sku = ?
			RETURNING sku, on_hand, reserved, version, name, price_cents`, delta, time.Now().UTC(), sku).
			Row().Scan(&it.SKU, &it.OnHand, &it.Reserved, &it.Version, &it.Name, &it.PriceCents)
		if err != nil {
			return err
		}
		ev, err := event.New("/services/inventory", contract.TypeStockChanged, sku, it)
		if err != nil {
			return err
		}
		return outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateReverseReturnsTheServicesWrites: once the service took writes (stock changes
// with their events, a reservation without one), a reverse backfill and sync leave the
// monolith verify-clean against the service.
func TestMigrateReverseReturnsTheServicesWrites(t *testing.T) {
	f := newMigrateFixture(t)
	f.relay(t, f.mono.DB, "monolith")
	f.seedItems(t, 50)
	f.mustMigrate(t, "inventory", "backfill")
	f.mustMigrate(t, "inventory", "sync", "-until-caught-up", "-deadline", "30s")
	f.mustMigrate(t, "inventory", "verify")

	f.relay(t, f.svc, "inventory")
	for i := range 20 {
		f.serviceWrite(t, fmt.Sprintf("SKU-%06d", i), 5)
	}
	err := store.Write(context.Background(), f.svc, func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Exec("INSERT INTO inventory_reservations (order_id, state, updated_at) VALUES ('svc-order', 'held', ?)", time.Now().UTC()).Error; err != nil {
			return err
		}
		return tx.Exec("INSERT INTO inventory_reservation_lines (order_id, sku, quantity, unit_price_cents) VALUES ('svc-order', 'SKU-000001', 1, 101)").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if status, out := f.ficus(t, "inventory", "verify"); status != 1 {
		t.Fatalf("forward verify after the service's writes: exit %d, want 1\n%s", status, out)
	}
	out := f.mustMigrate(t, "inventory", "backfill", "--reverse")
	if !strings.Contains(out, "service (") || !strings.Contains(out, "→ monolith (") {
		t.Errorf("reverse backfill does not say it copies from the service to the monolith:\n%s", out)
	}
	for i := 20; i < 30; i++ {
		f.serviceWrite(t, fmt.Sprintf("SKU-%06d", i), -3)
	}
	out = f.mustMigrate(t, "inventory", "sync", "--reverse", "-until-caught-up", "-deadline", "30s")
	if !strings.Contains(out, "10 applied") {
		t.Errorf("reverse sync should have applied the service's 10 later changes:\n%s", out)
	}
	out = f.mustMigrate(t, "inventory", "verify", "--reverse")
	if !strings.Contains(out, "verify inventory: clean: 52 rows in 3 tables match") {
		t.Errorf("reverse verify:\n%s", out)
	}
}

// TestMigrateVerifyReportsDifferences: a planted difference (one row changed, one missing)
// is printed with both sides' values, and verify exits 1.
func TestMigrateVerifyReportsDifferences(t *testing.T) {
	f := newMigrateFixture(t)
	f.seedItems(t, 30)
	f.mustMigrate(t, "inventory", "backfill", "-batch", "7")
	if err := f.svc.Exec("UPDATE inventory_items SET on_hand = 999 WHERE sku = 'SKU-000003'").Error; err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Exec("DELETE FROM inventory_items WHERE sku = 'SKU-000017'").Error; err != nil {
		t.Fatal(err)
	}
	status, out := f.ficus(t, "inventory", "verify")
	if status != 1 {
		t.Fatalf("verify with planted differences: exit %d, want 1\n%s", status, out)
	}
	for _, want := range []string{
		"inventory_items SKU-000003: changed: on_hand monolith: 1000, service: 999",
		"inventory_items SKU-000017: missing on the service; the monolith has {sku: SKU-000017, name: Item 17, price_cents: 117, on_hand: 1000",
		"verify inventory: 2 rows differ (inventory_items: 1 changed, 1 missing, 0 extra)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

// TestMigrateRefusesWhatItCannotDo: an unknown capability, a service database without the
// schema, and a checkpoint left by a backfill from another database each get a clear error.
func TestMigrateRefusesWhatItCannotDo(t *testing.T) {
	f := newMigrateFixture(t)
	f.seedItems(t, 3)
	status, out := f.ficus(t, "orders", "backfill")
	if status != 2 || !strings.Contains(out, `unknown capability "orders" for ficus migrate`) {
		t.Errorf("an unknown capability: exit %d\n%s", status, out)
	}
	empty := filepath.Join(f.dir, "empty.db")
	db, err := store.Open(context.Background(), "sqlite:"+empty, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store.Close(db)
	status, out = f.ficus(t, "inventory", "backfill", "-service", "sqlite:"+empty)
	if status != 1 || !strings.Contains(out, "the service's database (sqlite:"+empty+") has no table inventory_items") {
		t.Errorf("a service database without the schema: exit %d\n%s", status, out)
	}
	f.mustMigrate(t, "inventory", "backfill")
	other := filepath.Join(f.dir, "other.db")
	db, err = store.Open(context.Background(), "sqlite:"+other, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := inventorySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	store.Close(db)
	status, out = f.ficus(t, "inventory", "sync", "-monolith", "sqlite:"+other, "-until-caught-up")
	if status != 1 || !strings.Contains(out, "checkpoint from another source") || !strings.Contains(out, "copied from ") {
		t.Errorf("a sync from another monolith database: exit %d\n%s", status, out)
	}
}

// TestMigratePaymentsFollowsChargesAndRefunds: the payments module's charges and refunds,
// made after the backfill, reach the service through sync, balances included.
func TestMigratePaymentsFollowsChargesAndRefunds(t *testing.T) {
	f := newMigrateFixture(t)
	f.relay(t, f.mono.DB, "monolith")
	ctx := context.Background()
	limit := int64(1_000_000)
	c, err := f.mono.Customers.Create(ctx, customers.NewCustomer{Name: "Ada", Email: "ada@example.com", CreditLimitCents: &limit})
	if err != nil {
		t.Fatal(err)
	}
	charge := func(cents int64) payments.Payment {
		t.Helper()
		p, err := f.mono.Payments.Charge(ctx, payments.Charge{CustomerID: c.ID, AmountCents: &cents, Reference: "r"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := charge(1000)
	f.mustMigrate(t, "payments", "backfill")
	// The backfill seeds the service's copy of the customers too: a customer whose events
	// the stream no longer holds is known to the service all the same.
	var limitCopy int64
	if err := f.pay.Raw("SELECT credit_limit_cents FROM payments_customers WHERE customer_id = ?", c.ID).Row().Scan(&limitCopy); err != nil || limitCopy != limit {
		t.Errorf("the service's copy of the customer after backfill: limit %d (%v), want %d", limitCopy, err, limit)
	}
	charge(250)
	second := charge(99)
	if _, err := f.mono.Payments.Refund(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.mono.Payments.Refund(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	out := f.mustMigrate(t, "payments", "sync", "-until-caught-up", "-deadline", "30s")
	if !strings.Contains(out, "4 applied") {
		t.Errorf("sync should have applied 2 captures and 2 refunds:\n%s", out)
	}
	var outstanding int64
	if err := f.pay.Raw("SELECT outstanding_cents FROM payments_balances WHERE customer_id = ?", c.ID).Row().Scan(&outstanding); err != nil || outstanding != 250 {
		t.Errorf("the service's balance: %d (%v), want 250", outstanding, err)
	}
	if out := f.mustMigrate(t, "payments", "verify"); !strings.Contains(out, "verify payments: clean: 5 rows in 3 tables match") {
		t.Errorf("verify:\n%s", out)
	}
}
