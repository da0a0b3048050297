package orders_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"pgregory.net/rapid"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Each check runs sagas against a real database, crashes and all: fewer checks than
	// rapid's 100 keep the suite within seconds. -rapid.checks=N runs more.
	if f := flag.Lookup("rapid.checks"); f != nil && !isSet("rapid.checks") {
		_ = f.Value.Set("40")
	}
	os.Exit(m.Run())
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// sagaTestOptions are the saga's settings in these tests: the same logic, with times short
// enough that timeouts, leases and settling happen within a test.
func sagaTestOptions(timeout time.Duration) orders.SagaOptions {
	return orders.SagaOptions{Timeout: timeout, Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		CompensationAttempts: 4, Settle: 60 * time.Millisecond, Lease: 150 * time.Millisecond, Poll: 10 * time.Millisecond}
}

// process is one run of the monolith's orders module against the world: killed by the
// world's script, or closed by the test.
type process struct {
	gen  int64
	svc  *orders.Service
	stop context.CancelFunc
	done chan struct{}
}

func startProcess(gdb *gorm.DB, w *world, gen int64, timeout time.Duration) *process {
	ctx, cancel := context.WithCancel(context.Background())
	w.killMu.Lock()
	w.kill[gen] = cancel
	w.killMu.Unlock()
	w.alive.Store(gen)
	stock, pay := w.ports(gen)
	svc := orders.New(gdb, customersPort{w}, stock, pay, orders.Options{BySaga: true, Saga: sagaTestOptions(timeout),
		ReplyWithin: 30 * time.Millisecond, Context: ctx})
	p := &process{gen: gen, svc: svc, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = svc.Run(ctx)
	}()
	return p
}

// close stops the process as a crash would, and waits until nothing of it runs.
func (p *process) close() {
	p.stop()
	p.svc.Close()
	<-p.done
}

// openSagaDB opens a fresh database with the orders module's tables (and the outbox its
// order_placed events go to). close closes it (it is dropped when t ends).
func openSagaDB(t testing.TB) (gdb *gorm.DB, close func()) {
	t.Helper()
	ctx := context.Background()
	gdb, err := store.Open(ctx, storetest.DSN(t), store.Options{Modules: []string{orders.Module}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []func(context.Context, *gorm.DB) error{outbox.Migrate, orders.Migrate} {
		if err := m(ctx, gdb); err != nil {
			_ = store.Close(gdb)
			t.Fatal(err)
		}
	}
	return gdb, func() { _ = store.Close(gdb) }
}

// TestSagaProperties: random orders meet random failures — declined cards, a gateway
// outage, too little stock, services down or busy, answers lost, requests arriving late,
// and the monolith crashing before or after a call — and every order still ends placed or
// cancelled (stuck sagas are resumed once the failures stop, as an operator would); stock
// is conserved (on hand + sold to placed orders = what there was, nothing left reserved);
// every payment still captured belongs to exactly one placed order of its amount, every
// placed order with a total has its payment, and no order was charged twice.
func TestSagaProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		gdb, close := openSagaDB(t) // a fresh database for each check
		defer close()
		checkSagaProperties(rt, gdb)
	})
}

func checkSagaProperties(t *rapid.T, gdb *gorm.DB) {
	skus := rapid.IntRange(1, 3).Draw(t, "skus")
	script := make([]faultKind, rapid.IntRange(0, 24).Draw(t, "faults"))
	for i := range script {
		// Mostly calls that go through, so sagas get far enough for the faults to matter.
		if rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("fault%d?", i)) == 0 {
			script[i] = faultKind(rapid.IntRange(1, int(fKinds)-1).Draw(t, fmt.Sprintf("fault%d", i)))
		}
	}
	w := newWorld(script)
	for i := range skus {
		sku := fmt.Sprintf("SKU-%d", i)
		onHand := rapid.IntRange(0, 4).Draw(t, sku+" on hand")
		w.items[sku] = &fakeItem{onHand: onHand, price: int64(rapid.SampledFrom([]int{0, 150, 1000}).Draw(t, sku+" price"))}
		w.initial[sku] = onHand
	}
	w.customers["rich"] = &fakeCustomer{credit: 1 << 40}
	w.customers["poor"] = &fakeCustomer{credit: int64(rapid.IntRange(0, 2000).Draw(t, "poor's credit"))}
	w.customers["declined"] = &fakeCustomer{credit: 1 << 40, decline: true}
	w.customers["outage"] = &fakeCustomer{credit: 1 << 40, outage: true}
	initialCredit := map[string]int64{}
	for id, c := range w.customers {
		initialCredit[id] = c.credit
	}
	n := rapid.IntRange(1, 6).Draw(t, "orders")
	placements := make([]orders.PlaceOrder, n)
	for i := range placements {
		p := orders.PlaceOrder{CustomerID: rapid.SampledFrom([]string{"rich", "rich", "poor", "declined", "outage"}).Draw(t, fmt.Sprintf("order%d customer", i))}
		first := rapid.IntRange(0, skus-1).Draw(t, fmt.Sprintf("order%d sku", i))
		for j := range rapid.IntRange(1, min(2, skus)).Draw(t, fmt.Sprintf("order%d lines", i)) {
			p.Lines = append(p.Lines, orders.RequestLine{SKU: fmt.Sprintf("SKU-%d", (first+j)%skus),
				Quantity: rapid.IntRange(1, 3).Draw(t, fmt.Sprintf("order%d line%d qty", i, j))})
		}
		placements[i] = p
	}

	// Sagas that time out now and then, mid-way, or hardly ever.
	timeout := time.Duration(rapid.SampledFrom([]int{5, 40, 600}).Draw(t, "saga timeout (ms)")) * time.Millisecond
	gen := int64(1)
	proc := startProcess(gdb, w, gen, timeout)
	defer func() { proc.close() }()
	var placing sync.WaitGroup
	for _, p := range placements {
		placing.Go(func() { _, _ = proc.svc.Place(context.Background(), p) })
	}
	placing.Wait()

	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case g := <-w.crashed:
			if g == proc.gen {
				proc.close()
				gen++
				proc = startProcess(gdb, w, gen, timeout)
			}
			continue
		default:
		}
		sagas, err := proc.svc.Sagas(ctx, "", "", 200)
		if err != nil {
			t.Fatal(err)
		}
		open, stuck := 0, 0
		for _, sg := range sagas {
			switch sg.State {
			case orders.SagaStuck:
				stuck++
				open++
			case orders.SagaRunning, orders.SagaCompensating:
				open++
			}
		}
		if open == 0 && len(sagas) == len(placements) {
			break
		}
		if stuck > 0 && stuck == open {
			// Only stuck sagas are left, and nothing drives them on: the operator mends
			// what failed and resumes them.
			w.heal()
			for _, sg := range sagas {
				if sg.State == orders.SagaStuck {
					if _, err := proc.svc.ResumeSaga(ctx, sg.ID); err != nil {
						t.Fatalf("resuming %s: %v", sg.ID, err)
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sagas still open after 30s (faults applied %v):\n%s", w.faults, describe(sagas))
		}
		time.Sleep(5 * time.Millisecond) // poll the sagas' states
	}
	proc.close()
	w.late.Wait()
	checkInvariants(t, ctx, proc.svc, w, initialCredit)
}

// checkInvariants checks what must hold once every saga has ended.
func checkInvariants(t *rapid.T, ctx context.Context, svc *orders.Service, w *world, initialCredit map[string]int64) {
	sagas, err := svc.Sagas(ctx, "", "", 200)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	placed := map[string]orders.Saga{}
	sold := map[string]int{}
	for _, sg := range sagas {
		if !sg.Terminal() {
			t.Fatalf("saga %s is %s, want placed or cancelled:\n%s", sg.ID, sg.State, describe(sagas))
		}
		o, err := svc.Order(ctx, sg.ID)
		if err != nil {
			t.Fatalf("order %s: %v", sg.ID, err)
		}
		r := w.reservations[sg.ID]
		if sg.State == orders.SagaPlaced {
			placed[sg.ID] = sg
			if o.Status != orders.Placed {
				t.Fatalf("saga %s placed, its order is %s", sg.ID, o.Status)
			}
			if r == nil || r.state != "committed" {
				t.Fatalf("placed order %s: reservation %+v, want committed", sg.ID, r)
			}
			for _, l := range r.lines {
				sold[l.SKU] += l.Quantity
			}
			continue
		}
		if o.Status != orders.Cancelled {
			t.Fatalf("saga %s cancelled, its order is %s", sg.ID, o.Status)
		}
		if r != nil && (r.state == "held" || r.state == "committed") {
			t.Fatalf("cancelled order %s keeps its stock: reservation %s\n%s", sg.ID, r.state, describe(sagas))
		}
	}
	for sku, it := range w.items {
		if it.reserved != 0 {
			t.Fatalf("%s: %d still reserved after every saga ended\n%s", sku, it.reserved, describe(sagas))
		}
		if it.onHand+sold[sku] != w.initial[sku] {
			t.Fatalf("%s: %d on hand + %d sold to placed orders, had %d", sku, it.onHand, sold[sku], w.initial[sku])
		}
	}
	charged := map[string]int{}
	captured := map[string]int64{}
	for _, p := range w.payments {
		charged[p.ref]++
		if charged[p.ref] > 1 {
			t.Fatalf("order %s charged twice", p.ref)
		}
		if p.refunded {
			continue
		}
		captured[p.customer] += p.amount
		sg, ok := placed[p.ref]
		switch {
		case !ok:
			t.Fatalf("payment %s of %d is captured for order %s, which is not placed\n%s", p.id, p.amount, p.ref, describe(sagas))
		case sg.PaymentID != p.id || sg.TotalCents != p.amount:
			t.Fatalf("payment %s of %d for order %s, which records payment %q of %d", p.id, p.amount, p.ref, sg.PaymentID, sg.TotalCents)
		}
	}
	for id, sg := range placed {
		if sg.TotalCents == 0 {
			if sg.PaymentID != "" {
				t.Fatalf("order %s of total 0 has payment %s", id, sg.PaymentID)
			}
			continue
		}
		if p := w.payments[sg.PaymentID]; p == nil || p.refunded {
			t.Fatalf("placed order %s has no captured payment (%q)", id, sg.PaymentID)
		}
	}
	for id, c := range w.customers {
		if c.credit != initialCredit[id]-captured[id] {
			t.Fatalf("customer %s has %d of credit left, want %d − %d captured", id, c.credit, initialCredit[id], captured[id])
		}
	}
}

// describe lists sagas and their steps, for a failure message.
func describe(sagas []orders.Saga) string {
	sort.Slice(sagas, func(i, j int) bool { return sagas[i].ID < sagas[j].ID })
	var b strings.Builder
	for _, sg := range sagas {
		fmt.Fprintf(&b, "  %s %s %s total=%d payment=%q", sg.ID, sg.Kind, sg.State, sg.TotalCents, sg.PaymentID)
		if sg.Reason != nil {
			fmt.Fprintf(&b, " reason=%s", sg.Reason.Code)
		}
		b.WriteString("\n")
		for _, st := range sg.Steps {
			fmt.Fprintf(&b, "    %-8s %-8s attempts=%d uncertain=%v %s\n", st.Name, st.Status, st.Attempts, st.Uncertain, st.Error)
		}
	}
	return b.String()
}

// TestPostgres runs the saga's storage-dependent tests on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t, TestSagaProperties, TestCancelAnOrderPlacedBeforeTheSwitch)
}
