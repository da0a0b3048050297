package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs the suite again on PostgreSQL (make test-postgres).
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestBackfillCopiesEveryTable,
		TestBackfillResumesAfterTheLastCommittedBatch,
		TestBackfillRefusesACheckpointFromAnotherSource,
		TestVerifyReportsPlantedDifferences,
		TestSyncAppliesTheMonolithsEventsOnly,
		TestSyncRecomputesBalancesFromRows,
		TestSyncReconcilesTablesWithoutEvents,
		TestReverseCopiesTheServicesWritesBack,
		TestPaymentsCarriesTheCustomerCopy,
	)
}

func TestSpecsAreValid(t *testing.T) {
	for _, s := range Specs() {
		if err := s.validate(); err != nil {
			t.Error(err)
		}
	}
	if _, err := Lookup("orders"); !errors.Is(err, ErrUnknownCapability) || !strings.Contains(err.Error(), "inventory, payments") {
		t.Errorf("Lookup(orders) = %v, want ErrUnknownCapability listing the capabilities", err)
	}
	bad := Inventory()
	bad.Tables[2].Refs = append(bad.Tables[2].Refs, Ref{Column: "sku", Table: "nowhere"})
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("a reference to an unknown table: %v", err)
	}
	view := Payments()
	view.Tables[2].Monolith = &View{Table: "customers_customers", Columns: []string{"lower(id)", "email", "credit_limit_cents", "version", "updated_at", "updated_at"}}
	view.Tables[2].Local = []string{"customer_id", "nope"}
	err := view.validate()
	for _, want := range []string{`key column customer_id is "lower(id)"`, "local column customer_id", "local column nope"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a view paged by an expression, local key and unknown columns: %v, want it to say %q", err, want)
		}
	}
}

func TestBackfillCopiesEveryTable(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 1234)
	seedReservation(t, p.mono.DB, "order-1", 2, sku(1), sku(7))
	seedReservation(t, p.mono.DB, "order-2", 1, sku(7))
	var seen []Progress
	m := p.migration(t, Forward, Options{Batch: 100, Progress: func(pr Progress) { seen = append(seen, pr) }})
	res := backfill(t, m, b)
	if res.Rows != 1234+2+3 || res.Resumed || res.AlreadyDone {
		t.Errorf("backfill copied %d rows (resumed %v, done %v), want %d", res.Rows, res.Resumed, res.AlreadyDone, 1234+5)
	}
	if n := countRows(t, p.svc.DB, "inventory_items"); n != 1234 {
		t.Errorf("service holds %d items, want 1234", n)
	}
	last := seen[len(seen)-1]
	if last.Table != "inventory_reservation_lines" || last.Done != 3 || last.Total != 3 {
		t.Errorf("last progress %+v, want the lines table at 3/3", last)
	}
	mustBeClean(t, m)

	again := backfill(t, m, b)
	if !again.AlreadyDone || again.Rows != 0 {
		t.Errorf("a second backfill copied %d rows (done %v); it should have had nothing to do", again.Rows, again.AlreadyDone)
	}

	st, err := ReadStatus(testCtx(t), p.svc.DB)
	if err != nil || len(st) != 1 {
		t.Fatalf("ReadStatus of the target: %+v, %v; want one migration", st, err)
	}
	s := st[0]
	if s.Capability != "inventory" || s.Direction != Forward || s.Source != p.mono.Identity || s.BackfillDone == nil ||
		s.Holder != "" || s.Verify == nil || s.Verify.Differences != 0 || s.Verify.Rows != 1239 {
		t.Errorf("status: %+v (verify %+v), want a finished forward backfill, released, verified clean over 1239 rows", s, s.Verify)
	}
	if len(s.Tables) != 3 || s.Tables[0].Table != "inventory_items" || s.Tables[0].Copied != 1234 || !s.Tables[2].Done {
		t.Errorf("status tables: %+v, want the three in copy order, all done", s.Tables)
	}
	if st, err := ReadStatus(testCtx(t), p.mono.DB); err != nil || len(st) != 0 {
		t.Errorf("ReadStatus of a database no migration wrote to: %+v, %v; want none", st, err)
	}
}

// TestBackfillResumesAfterTheLastCommittedBatch interrupts a backfill in the middle (its
// context ends) and runs it again: the second run copies only what the first did not commit.
// The command's test kills a real process (cmd/ficus TestMigrateBackfillSurvivesSIGKILL).
func TestBackfillResumesAfterTheLastCommittedBatch(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 3000)
	ctx, cancel := context.WithCancel(testCtx(t))
	m := p.migration(t, Forward, Options{Batch: 250, Progress: func(pr Progress) {
		if pr.Done >= 1000 {
			cancel()
		}
	}})
	first, err := m.Backfill(ctx, b, BackfillOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted backfill: %v, want context.Canceled", err)
	}
	copied := countRows(t, p.svc.DB, "inventory_items")
	if copied < 1000 || copied >= 3000 || copied != first.Rows {
		t.Fatalf("after the interruption the service holds %d items and the run reported %d; want the same, between 1000 and 3000", copied, first.Rows)
	}
	m = p.migration(t, Forward, Options{Batch: 250})
	second := backfill(t, m, b)
	if !second.Resumed || second.Rows != 3000-copied || second.SyncFrom != first.SyncFrom {
		t.Errorf("resumed backfill: resumed %v, %d rows, sync from %d; want resumed, %d rows, sync from %d",
			second.Resumed, second.Rows, second.SyncFrom, 3000-copied, first.SyncFrom)
	}
	mustBeClean(t, m)
}

func TestBackfillRefusesACheckpointFromAnotherSource(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 10)
	backfill(t, p.migration(t, Forward, Options{}), b)

	other := newPair(t, Inventory())
	seedItems(t, other.mono.DB, 100, 5)
	m, err := New(p.spec, Forward, other.mono, p.svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Backfill(testCtx(t), b, BackfillOptions{})
	if !errors.Is(err, ErrOtherSource) || !strings.Contains(err.Error(), p.mono.Identity) || !strings.Contains(err.Error(), "-restart") {
		t.Fatalf("backfill from another database: %v, want ErrOtherSource naming the first one and -restart", err)
	}
	if _, err := m.Sync(testCtx(t), b, SyncOptions{UntilCaughtUp: true}); !errors.Is(err, ErrOtherSource) {
		t.Errorf("sync from another database: %v, want ErrOtherSource", err)
	}
	res, err := m.Backfill(testCtx(t), b, BackfillOptions{Restart: true})
	if err != nil || res.Rows != 5 || res.Resumed {
		t.Fatalf("backfill -restart: %+v, %v; want 5 rows copied afresh", res, err)
	}
}

func TestBackfillNeedsTheTargetsSchema(t *testing.T) {
	p := newPair(t, Inventory())
	empty, dsn := openDB(t)
	svc := Side{Name: "service", DB: empty, Identity: dsn}
	m, err := New(p.spec, Forward, p.mono, svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Backfill(testCtx(t), newBus(t), BackfillOptions{})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "service's database") || !strings.Contains(err.Error(), "inventory_items") {
		t.Fatalf("backfill into an empty database: %v, want ErrSchema naming the service's database and the table", err)
	}
	mustExec(t, empty, "CREATE TABLE inventory_items (sku TEXT PRIMARY KEY, name TEXT)")
	_, err = m.Backfill(testCtx(t), newBus(t), BackfillOptions{})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "price_cents, on_hand, reserved, version, updated_at") {
		t.Fatalf("backfill into a table lacking columns: %v, want ErrSchema naming them", err)
	}
}

// TestOneMigrationAtATime: while a live process holds a migration's claim another is
// refused; a claim whose process died on this host is taken over at once.
func TestOneMigrationAtATime(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 10)
	backfill(t, p.migration(t, Forward, Options{}), b)
	host, _ := os.Hostname()
	claim := func(holder string) {
		mustExec(t, p.svc.DB, "UPDATE ficus_migrate_runs SET holder = ?, lease_until = ?", holder, time.Now().Add(time.Hour).UTC())
	}
	claim(host + ":" + strconv.Itoa(os.Getppid())) // alive: the test's parent
	_, err := p.migration(t, Forward, Options{}).Sync(testCtx(t), b, SyncOptions{UntilCaughtUp: true})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), strconv.Itoa(os.Getppid())) {
		t.Fatalf("sync while another process holds the claim: %v, want ErrBusy naming it", err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	claim(host + ":" + strconv.Itoa(gone.Process.Pid))
	syncUp(t, p.migration(t, Forward, Options{}), b)
}

// TestVerifyReportsPlantedDifferences: one row changed, one missing and one extra on the
// target are each reported, with the values of both sides.
func TestVerifyReportsPlantedDifferences(t *testing.T) {
	p := newPair(t, Inventory())
	seedItems(t, p.mono.DB, 0, 300)
	m := p.migration(t, Forward, Options{Batch: 64})
	backfill(t, m, newBus(t))
	mustExec(t, p.svc.DB, "UPDATE inventory_items SET on_hand = 999 WHERE sku = ?", sku(42))
	mustExec(t, p.svc.DB, "DELETE FROM inventory_items WHERE sku = ?", sku(250))
	mustExec(t, p.svc.DB, "INSERT INTO inventory_items (sku, name, price_cents, on_hand, reserved, version, updated_at) VALUES ('ZZ-EXTRA', 'x', 1, 1, 0, 1, ?)", time.Now().UTC())
	rep, err := m.Verify(testCtx(t), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	items := rep.Tables[0]
	if rep.Clean() || items.Changed != 1 || items.Missing != 1 || items.Extra != 1 || rep.Differences() != 3 {
		t.Fatalf("verify: %s, want 1 changed, 1 missing, 1 extra", rep.Summary())
	}
	if items.SourceSum == items.TargetSum || items.SourceRows != 300 || items.TargetRows != 300 {
		t.Errorf("sums %x/%x, rows %d/%d: want different sums and 300 rows a side", items.SourceSum, items.TargetSum, items.SourceRows, items.TargetRows)
	}
	byKind := map[DiffKind]Difference{}
	for _, d := range items.Diffs {
		byKind[d.Kind] = d
	}
	ch := byKind[Changed]
	onHand := 3 // on_hand's column
	if ch.Key[0] != sku(42) || ch.Source[onHand] != "92" || ch.Target[onHand] != "999" || len(ch.ChangedColumns()) != 1 {
		t.Errorf("changed row: %+v, want %s with on_hand 92 on the monolith and 999 on the service", ch, sku(42))
	}
	if d := byKind[Missing]; d.Key[0] != sku(250) || d.Source == nil || d.Target != nil {
		t.Errorf("missing row: %+v, want %s present on the monolith only", d, sku(250))
	}
	if d := byKind[Extra]; d.Key[0] != "ZZ-EXTRA" || d.Source != nil || d.Target == nil {
		t.Errorf("extra row: %+v, want ZZ-EXTRA on the service only", d)
	}
	var recorded string
	if err := p.svc.DB.Raw("SELECT summary FROM ficus_migrate_verifications").Row().Scan(&recorded); err != nil || recorded != rep.Summary() {
		t.Errorf("recorded verify result %q (%v), want %q", recorded, err, rep.Summary())
	}
}

// TestSyncAppliesTheMonolithsEventsOnly: sync replays the events after the backfill's
// position — the ones from changes made during the backfill included — and skips the
// service's own events, which would otherwise copy the monolith's older row over the
// service's newer one.
func TestSyncAppliesTheMonolithsEventsOnly(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 200)
	// An event published before the backfill: not replayed (it is before the position).
	changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(1), 11)
	m := p.migration(t, Forward, Options{Batch: 50, Progress: func(pr Progress) {
		// A change while the backfill runs, to a row already copied.
		if pr.Table == "inventory_items" && pr.Done == 100 {
			changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(2), 22)
		}
	}})
	backfill(t, m, b)
	if got := stock(t, p.svc.DB, sku(2)); got == 22 {
		t.Fatal("the change made during the backfill was copied by it: the test no longer checks the replay")
	}
	for i := 10; i < 20; i++ {
		changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(i), 100+i)
		changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(i), 200+i)
	}
	// The service changes a row and says so; the monolith's copy of it is older.
	changeStock(t, b, p.svc.DB, p.spec.ServiceSource, sku(5), 555)
	res := syncUp(t, p.migration(t, Forward, Options{}), b)
	if res.Applied != 21 || res.Foreign != 1 || !res.CaughtUp {
		t.Errorf("sync: %+v, want 21 applied, 1 foreign skipped, caught up", res)
	}
	if got := stock(t, p.svc.DB, sku(5)); got != 555 {
		t.Errorf("the service's own change was undone: on_hand %d, want 555", got)
	}
	if got := stock(t, p.svc.DB, sku(2)); got != 22 {
		t.Errorf("the change made during the backfill: on_hand %d on the service, want 22", got)
	}
	// A second sync starts where the first stopped.
	changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(5), 5)
	again := syncUp(t, p.migration(t, Forward, Options{}), b)
	if again.From != res.To || again.Events != 1 {
		t.Errorf("second sync: %+v, want to start at %d with one event to read", again, res.To)
	}
	mustBeClean(t, m)
}

// stock returns an item's on_hand in db.
func stock(t *testing.T, db *gorm.DB, s string) int {
	t.Helper()
	var n int
	if err := db.Raw("SELECT on_hand FROM inventory_items WHERE sku = ?", s).Row().Scan(&n); err != nil {
		t.Fatalf("reading %s: %v", s, err)
	}
	return n
}

// TestSyncRecomputesBalancesFromRows: captures and refunds copy the payment row, and the
// customer's balance is recomputed from the copied rows: a replayed event, or two events
// for one payment, cannot count twice.
func TestSyncRecomputesBalancesFromRows(t *testing.T) {
	p := newPair(t, Payments())
	b := newBus(t)
	m := p.migration(t, Forward, Options{})
	backfill(t, m, b)
	now := time.Now().UTC().Truncate(time.Millisecond)
	capture := func(id, customer string, cents int64) {
		mustExec(t, p.mono.DB, "INSERT INTO payments_payments (id, customer_id, amount_cents, reference, status, created_at) VALUES (?, ?, ?, 'r', 'captured', ?)", id, customer, cents, now)
		mustExec(t, p.mono.DB, "INSERT INTO payments_balances (customer_id, outstanding_cents) VALUES (?, ?) ON CONFLICT (customer_id) DO UPDATE SET outstanding_cents = payments_balances.outstanding_cents + excluded.outstanding_cents", customer, cents)
		data := contract.PaymentCaptured{PaymentID: id, CustomerID: customer, Reference: "r", AmountCents: cents}
		publish(t, b, p.spec.MonolithSource, contract.TypePaymentCaptured, id, data)
		publish(t, b, p.spec.MonolithSource, contract.TypePaymentCaptured, id, data) // delivered twice
	}
	capture("p1", "ada", 1000)
	capture("p2", "ada", 250)
	capture("p3", "bob", 99)
	mustExec(t, p.mono.DB, "UPDATE payments_payments SET status = 'refunded', refunded_at = ? WHERE id = 'p2'", now)
	mustExec(t, p.mono.DB, "UPDATE payments_balances SET outstanding_cents = outstanding_cents - 250 WHERE customer_id = 'ada'")
	publish(t, b, p.spec.MonolithSource, contract.TypePaymentRefunded, "p2", contract.PaymentRefunded{PaymentID: "p2", CustomerID: "ada", AmountCents: 250})
	syncUp(t, p.migration(t, Forward, Options{}), b)
	var ada int64
	if err := p.svc.DB.Raw("SELECT outstanding_cents FROM payments_balances WHERE customer_id = 'ada'").Row().Scan(&ada); err != nil || ada != 1000 {
		t.Errorf("ada's balance on the service: %d (%v), want 1000", ada, err)
	}
	mustBeClean(t, m)
}

// TestSyncReconcilesTablesWithoutEvents: reservations emit no event; sync's reconcile pass
// copies them, their lines, and a line's item the service lacks.
func TestSyncReconcilesTablesWithoutEvents(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 20)
	seedReservation(t, p.mono.DB, "order-1", 1, sku(3))
	m := p.migration(t, Forward, Options{})
	backfill(t, m, b)
	// As the module does: the stock changes of a reservation have events, the
	// reservation itself has none.
	seedItems(t, p.mono.DB, 500, 1)
	announce(t, b, p.mono.DB, p.spec.MonolithSource, sku(500))
	seedReservation(t, p.mono.DB, "order-2", 2, sku(4), sku(500))
	announce(t, b, p.mono.DB, p.spec.MonolithSource, sku(4), sku(500))
	mustExec(t, p.mono.DB, "UPDATE inventory_reservations SET state = 'committed' WHERE order_id = 'order-1'")
	res := syncUp(t, p.migration(t, Forward, Options{}), b)
	if res.Passes != 1 || res.Reconciled != 4 || res.Applied != 3 {
		t.Errorf("sync: %+v, want 3 events applied and one reconcile pass repairing 4 rows (2 reservations, 2 lines)", res)
	}
	mustBeClean(t, m)
}

// TestLinesBringTheirItems: a reservation line whose item the target lacks (created after
// the items were copied, its event not applied yet) brings the item along instead of
// failing the target's foreign key.
func TestLinesBringTheirItems(t *testing.T) {
	p := newPair(t, Inventory())
	seedItems(t, p.mono.DB, 0, 5)
	seedItems(t, p.mono.DB, 900, 1)
	seedReservation(t, p.mono.DB, "order-1", 1, sku(900))
	m := p.migration(t, Forward, Options{})
	// The target as a backfill leaves it when the item came after the items were copied.
	seedItems(t, p.svc.DB, 0, 5)
	mustExec(t, p.svc.DB, "INSERT INTO inventory_reservations (order_id, state, updated_at) VALUES ('order-1', 'held', ?)", time.Now().UTC())
	lines, _ := p.spec.table("inventory_reservation_lines")
	lrows, err := page(testCtx(t), p.mono.DB, lines, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	writes, err := m.withParents(testCtx(t), lines, lrows)
	if err != nil {
		t.Fatal(err)
	}
	if len(writes) != 2 || writes[0].t.Name != "inventory_items" || len(writes[0].rows) != 1 || writes[0].rows[0][0] != sku(900) {
		t.Fatalf("writes for a line whose item the target lacks: %+v, want the item first", writes)
	}
}

// announce publishes the stock_changed event of each sku as db holds it.
func announce(t *testing.T, b *testBus, db *gorm.DB, source string, skus ...string) {
	t.Helper()
	for _, s := range skus {
		var it contract.StockChanged
		err := db.Raw("SELECT sku, on_hand, reserved, version, name, price_cents FROM inventory_items WHERE sku = ?", s).
			Row().Scan(&it.SKU, &it.OnHand, &it.Reserved, &it.Version, &it.Name, &it.PriceCents)
		if err != nil {
			t.Fatal(err)
		}
		publish(t, b, source, contract.TypeStockChanged, s, it)
	}
}

// TestReverseCopiesTheServicesWritesBack: after the service took writes, a reverse backfill
// and sync leave the monolith equal to the service.
func TestReverseCopiesTheServicesWritesBack(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 100)
	fwd := p.migration(t, Forward, Options{})
	backfill(t, fwd, b)
	syncUp(t, fwd, b)
	// The service owns the writes now.
	for i := 0; i < 30; i++ {
		changeStock(t, b, p.svc.DB, p.spec.ServiceSource, sku(i), 1000+i)
	}
	seedItems(t, p.svc.DB, 100, 5)
	seedReservation(t, p.svc.DB, "order-s", 1, sku(101))
	rev := p.migration(t, Reverse, Options{})
	backfill(t, rev, b)
	for i := 30; i < 40; i++ {
		changeStock(t, b, p.svc.DB, p.spec.ServiceSource, sku(i), 2000+i)
	}
	// A stray event of the monolith's is not the reverse sync's to apply.
	changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(99), 7)
	res := syncUp(t, rev, b)
	if res.Applied != 10 || res.Foreign != 1 || stock(t, p.mono.DB, sku(99)) != 7 {
		t.Errorf("reverse sync: %+v, want the service's 10 events applied and the monolith's 1 skipped", res)
	}
	changeStock(t, b, p.svc.DB, p.spec.ServiceSource, sku(99), 8)
	syncUp(t, rev, b)
	rep := mustBeClean(t, rev)
	if rep.From.Name != "service" || rep.Tables[0].SourceRows != 105 {
		t.Errorf("reverse verify compared from %s, %d items; want from the service, 105 items", rep.From.Name, rep.Tables[0].SourceRows)
	}
}

// shiftedStream is a bus whose stream stands where the test says.
type shiftedStream struct {
	*testBus
	pos bus.Position
}

func (s shiftedStream) Position(context.Context) (bus.Position, error) { return s.pos, nil }

// TestSyncRefusesAGapInTheStream: when the stream no longer holds the events after the
// checkpoint (they passed its retention), or ends before it (its store was replaced), sync
// refuses rather than miss changes.
func TestSyncRefusesAGapInTheStream(t *testing.T) {
	p := newPair(t, Inventory())
	b := newBus(t)
	seedItems(t, p.mono.DB, 0, 5)
	changeStock(t, b, p.mono.DB, p.spec.MonolithSource, sku(1), 7)
	backfill(t, p.migration(t, Forward, Options{}), b) // sync starts after sequence 1
	m := p.migration(t, Forward, Options{})
	_, err := m.Sync(testCtx(t), shiftedStream{b, bus.Position{First: 5, Last: 9}}, SyncOptions{UntilCaughtUp: true})
	if !errors.Is(err, ErrEventsGone) || !strings.Contains(err.Error(), "after sequence 1, but the stream now begins at 5") {
		t.Errorf("sync with events 2–4 gone: %v, want ErrEventsGone saying so", err)
	}
	_, err = m.Sync(testCtx(t), shiftedStream{b, bus.Position{}}, SyncOptions{UntilCaughtUp: true})
	if !errors.Is(err, ErrEventsGone) || !strings.Contains(err.Error(), "store replaced") {
		t.Errorf("sync against an emptied stream: %v, want ErrEventsGone", err)
	}
	syncUp(t, m, b) // the real stream holds everything: the claim was released each time
}

// seedCustomer writes a customer into the monolith's customers table, as its module does.
func seedCustomer(t *testing.T, db *gorm.DB, id string, limit, version int64, at time.Time) {
	t.Helper()
	mustExec(t, db, `INSERT INTO customers_customers (id, name, email, credit_limit_cents, version, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET credit_limit_cents = excluded.credit_limit_cents,
		version = excluded.version, updated_at = excluded.updated_at`, id, "Customer "+id, id+"@example.com", limit, version, at, at)
}

// customerCopy reads the service's copy of a customer: its credit limit and version.
func customerCopy(t *testing.T, db *gorm.DB, id string) (limit, version int64) {
	t.Helper()
	if err := db.Raw("SELECT credit_limit_cents, version FROM payments_customers WHERE customer_id = ?", id).Row().Scan(&limit, &version); err != nil {
		t.Fatalf("reading the service's copy of %s: %v", id, err)
	}
	return limit, version
}

// TestPaymentsCarriesTheCustomerCopy: the payments service's copy of the customers is seeded
// by backfill from the monolith's customers table (another table, another shape), kept whole
// by sync's reconcile pass without going back in version, compared by verify without the
// service's own applied_at, and left alone by the reverse direction: the monolith owns the
// customers.
func TestPaymentsCarriesTheCustomerCopy(t *testing.T) {
	p := newPair(t, Payments())
	b := newBus(t)
	at := time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Millisecond) // long out of the stream
	for i := range 250 {
		seedCustomer(t, p.mono.DB, fmt.Sprintf("cus-%04d", i), int64(1000+i), 1, at)
	}
	// The service's consumer already applied a newer change of one customer than the
	// monolith's table shows the backfill (its event overtook the copy).
	mustExec(t, p.svc.DB, `INSERT INTO payments_customers (customer_id, email, credit_limit_cents, version, updated_at, applied_at)
		VALUES ('cus-0007', 'cus-0007@example.com', 5, 2, ?, ?)`, at, time.Now().UTC())
	m := p.migration(t, Forward, Options{Batch: 100})
	res := backfill(t, m, b)
	if n := countRows(t, p.svc.DB, "payments_customers"); n != 250 {
		t.Fatalf("the service's copy holds %d customers after backfill, want 250 (%+v)", n, res.Tables)
	}
	if limit, v := customerCopy(t, p.svc.DB, "cus-0003"); limit != 1003 || v != 1 {
		t.Errorf("cus-0003 on the service: limit %d version %d, want 1003 version 1", limit, v)
	}
	if limit, v := customerCopy(t, p.svc.DB, "cus-0007"); limit != 5 || v != 2 {
		t.Errorf("cus-0007 on the service: limit %d version %d, want the newer copy (5, version 2) kept", limit, v)
	}
	// The monolith catches up with cus-0007 and changes two more; the service applies
	// one of them itself from its event, later (its applied_at is its own).
	seedCustomer(t, p.mono.DB, "cus-0007", 5, 2, at)
	seedCustomer(t, p.mono.DB, "cus-0010", 77, 2, at.Add(time.Hour))
	seedCustomer(t, p.mono.DB, "cus-0011", 88, 2, at.Add(time.Hour))
	seedCustomer(t, p.mono.DB, "cus-9999", 99, 1, at.Add(time.Hour))
	mustExec(t, p.svc.DB, "UPDATE payments_customers SET credit_limit_cents = 77, version = 2, updated_at = ?, applied_at = ? WHERE customer_id = 'cus-0010'",
		at.Add(time.Hour), time.Now().UTC())
	rep, err := m.Verify(testCtx(t), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cust TableReport
	for _, tr := range rep.Tables {
		if tr.Table == "payments_customers" {
			cust = tr
		}
	}
	if cust.Changed != 1 || cust.Missing != 1 || cust.Extra != 0 {
		t.Errorf("verify before sync: customers %d changed, %d missing, %d extra; want cus-0011 changed and cus-9999 missing (cus-0007's and cus-0010's applied_at is the service's own)",
			cust.Changed, cust.Missing, cust.Extra)
	}
	syncUp(t, p.migration(t, Forward, Options{}), b)
	mustBeClean(t, m)
	if limit, _ := customerCopy(t, p.svc.DB, "cus-9999"); limit != 99 {
		t.Errorf("cus-9999 on the service after sync: limit %d, want 99", limit)
	}
	// Reverse: the customers are not the service's to give back.
	rev := p.migration(t, Reverse, Options{})
	rres := backfill(t, rev, b)
	for _, tc := range rres.Tables {
		if tc.Table == "payments_customers" {
			t.Errorf("the reverse backfill copied the customer copy back: %+v", tc)
		}
	}
	rrep := mustBeClean(t, rev)
	if len(rrep.Tables) != 2 {
		t.Errorf("reverse verify compared %d tables, want 2 (not the customer copy)", len(rrep.Tables))
	}
}
