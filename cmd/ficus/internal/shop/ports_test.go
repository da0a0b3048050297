package shop_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/monolith/remote"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/resilience"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// ports are the orders module's ports as one adapter or the other serves them.
type ports struct {
	name     string
	stock    orders.Stock
	payments orders.Payments
	// itemsURL and customer set up what the ports work on.
	itemsURL string
	// remote is set for the HTTP adapters: commands repeat safely.
	remote bool
}

func remoteClient(t *testing.T, name, url string) *remote.Client {
	t.Helper()
	c, err := remote.NewClient(name, config.Backend{URL: url, Timeout: config.Duration(2 * time.Second),
		Retry:   config.Retry{Attempts: 3, Backoff: config.Duration(5 * time.Millisecond), MaxBackoff: config.Duration(20 * time.Millisecond), Budget: 1},
		Breaker: config.Breaker{ConsecutiveFailures: 5, OpenFor: config.Duration(time.Second), HalfOpenRequests: 1}}, remote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// bothAdapters returns the in-process adapters (the monolith's own modules) and the remote
// ones (the extracted services over HTTP) of one shop.
func bothAdapters(t *testing.T, s *shop.Shop) []ports {
	return []ports{
		{name: "in process", stock: monolith.LocalStock(s.Monolith.Inventory), payments: monolith.LocalPayments(s.Monolith.Payments), itemsURL: s.URL},
		{name: "remote", stock: remote.NewStock(remoteClient(t, "inventory", s.InventoryURL)),
			payments: remote.NewPayments(remoteClient(t, "payments", s.PaymentsURL)), itemsURL: s.InventoryURL, remote: true},
	}
}

func code(err error) string {
	if fe, ok := fault.As(err); ok {
		return fe.Code
	}
	return ""
}

// TestPortsContract: the in-process and the remote adapters answer the orders module alike —
// the same results, the same domain errors (the problem codes the services answer become the
// modules' fault errors), the same idempotent commands — on both database engines.
func TestPortsContract(t *testing.T) {
	s := startShop(t, shop.Options{})
	ctx := context.Background()
	cust := mustSend(t, 201, "POST", s.URL+"/api/customers", `{"name":"Pat","email":"pat@ports.test","credit_limit_cents":100000}`).json(t)["id"].(string)
	poor := mustSend(t, 201, "POST", s.URL+"/api/customers", `{"name":"Poe","email":"poe@ports.test","credit_limit_cents":10}`).json(t)["id"].(string)
	for _, p := range bothAdapters(t, s) {
		t.Run(p.name, func(t *testing.T) {
			mustSend(t, 201, "POST", p.itemsURL+"/api/inventory/items", `{"sku":"PORT-1","name":"Port","price_cents":250,"on_hand":5}`)
			if _, err := p.stock.Reserve(ctx, "o-nope", []orders.RequestLine{{SKU: "PORT-NOPE", Quantity: 1}}); code(err) != "item_not_found" {
				t.Errorf("reserving an unknown item: %v, want item_not_found", err)
			}
			if _, err := p.stock.Reserve(ctx, "o-much", []orders.RequestLine{{SKU: "PORT-1", Quantity: 6}}); code(err) != "insufficient_stock" {
				t.Errorf("reserving too much: %v, want insufficient_stock", err)
			}
			lines, err := p.stock.Reserve(ctx, "o-1", []orders.RequestLine{{SKU: "PORT-1", Quantity: 2}})
			if err != nil || len(lines) != 1 || lines[0].UnitPriceCents != 250 || lines[0].Quantity != 2 {
				t.Fatalf("reserving: %v %+v", err, lines)
			}
			again, err := p.stock.Reserve(ctx, "o-1", []orders.RequestLine{{SKU: "PORT-1", Quantity: 2}})
			if err != nil || len(again) != 1 || again[0] != lines[0] {
				t.Errorf("reserving again, the same lines: %v %+v, want the first reservation", err, again)
			}
			if _, err := p.stock.Reserve(ctx, "o-1", []orders.RequestLine{{SKU: "PORT-1", Quantity: 1}}); code(err) != "reservation_exists" {
				t.Errorf("reserving other lines for the same order: %v, want reservation_exists", err)
			}
			for range 2 {
				if err := p.stock.Commit(ctx, "o-1"); err != nil {
					t.Fatalf("committing (twice is a no-op): %v", err)
				}
			}
			if err := p.stock.Release(ctx, "o-1"); code(err) != "reservation_committed" {
				t.Errorf("releasing sold stock: %v, want reservation_committed", err)
			}
			for range 2 {
				if err := p.stock.Return(ctx, "o-1"); err != nil {
					t.Fatalf("returning (twice is a no-op): %v", err)
				}
			}
			if _, err := p.stock.Reserve(ctx, "o-2", []orders.RequestLine{{SKU: "PORT-1", Quantity: 1}}); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := p.stock.Release(ctx, "o-2"); err != nil {
					t.Fatalf("releasing (twice is a no-op): %v", err)
				}
			}
			r, err := p.stock.Reservation(ctx, "o-2")
			if err != nil || r.State != "released" || r.OrderID != "o-2" {
				t.Errorf("reading the reservation: %v %+v", err, r)
			}
			if _, err := p.stock.Reservation(ctx, "o-none"); code(err) != "reservation_not_found" {
				t.Errorf("reading no reservation: %v, want reservation_not_found", err)
			}
			if err := p.stock.Release(ctx, "o-none"); code(err) != "reservation_not_found" {
				t.Errorf("releasing no reservation: %v, want reservation_not_found", err)
			}
		})
	}
	if err := s.AwaitCustomers(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range bothAdapters(t, s) {
		t.Run(p.name+" payments", func(t *testing.T) {
			order := "order-" + p.name
			id, err := p.payments.Charge(ctx, cust, 1200, order)
			if err != nil || id == "" {
				t.Fatalf("charging: %q %v", id, err)
			}
			if p.remote {
				// Remote charges carry the order's key: asking again answers the first.
				// (In process a charge commits with the saga's record, exactly once.)
				again, err := p.payments.Charge(ctx, cust, 1200, order)
				if err != nil || again != id {
					t.Errorf("charging again for the order: %q %v, want %q", again, err, id)
				}
			}
			pay, err := p.payments.Payment(ctx, id)
			if err != nil || pay.AmountCents != 1200 || pay.Reference != order || pay.Status != "captured" {
				t.Errorf("reading the payment: %v %+v", err, pay)
			}
			for range 2 {
				if err := p.payments.Refund(ctx, order, id); err != nil {
					t.Fatalf("refunding (twice is a no-op): %v", err)
				}
			}
			if pay, _ := p.payments.Payment(ctx, id); pay.Status != "refunded" {
				t.Errorf("after the refund the payment is %q", pay.Status)
			}
			if _, err := p.payments.Charge(ctx, poor, 1200, "poor-"+p.name); code(err) != "payment_declined" {
				t.Errorf("over the credit limit: %v, want payment_declined", err)
			}
			if _, err := p.payments.Payment(ctx, "no-such-payment"); code(err) != "payment_not_found" {
				t.Errorf("reading no payment: %v, want payment_not_found", err)
			}
		})
	}
}

// TestRemoteAdapterRefusesCallsInsideAWriteTransaction: a remote call made with a context
// that carries a unit of work fails at once with store.ErrNetworkInTx, sending nothing.
func TestRemoteAdapterRefusesCallsInsideAWriteTransaction(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	gdb, err := store.Open(context.Background(), storetest.DSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(gdb) })
	stock := remote.NewStock(remoteClient(t, "inventory", srv.URL))
	err = store.Write(context.Background(), gdb, func(ctx context.Context, _ *gorm.DB) error {
		return stock.Commit(ctx, "o-1")
	})
	if !errors.Is(err, store.ErrNetworkInTx) || hits.Load() != 0 {
		t.Fatalf("a call inside a transaction: %v, %d requests sent; want ErrNetworkInTx and none", err, hits.Load())
	}
	if errors.Is(err, orders.ErrOutcomeUnknown) {
		t.Errorf("a refused call is not of unknown outcome: %v", err)
	}
}

// TestRemoteAdapterResilience: the remote adapter retries a command the service answered
// 503 (with its idempotency key, so the repeat is safe), times out an attempt the service
// does not answer and says its outcome is unknown, and opens its breaker after consecutive
// failures, refusing calls at once without reaching the service.
func TestRemoteAdapterResilience(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var keys []string
	var mode atomic.Value // "flaky" | "hang" | "down"
	mode.Store("flaky")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		switch mode.Load() {
		case "flaky":
			if n == 1 {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(503)
				_, _ = w.Write([]byte(`{"status":503,"code":"customer_not_yet_known","title":"Service Unavailable"}`))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"order_id":"o-1","state":"committed","lines":[],"updated_at":"2026-01-01T00:00:00.000Z"}`))
		case "hang":
			<-r.Context().Done()
		default:
			w.WriteHeader(502)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := remote.NewClient("inventory", config.Backend{URL: srv.URL, Timeout: config.Duration(100 * time.Millisecond),
		Retry:   config.Retry{Attempts: 2, Backoff: config.Duration(time.Millisecond), MaxBackoff: config.Duration(time.Millisecond), Budget: 1},
		Breaker: config.Breaker{ConsecutiveFailures: 2, OpenFor: config.Duration(time.Minute), HalfOpenRequests: 1}}, remote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stock := remote.NewStock(c)
	ctx := context.Background()
	if err := stock.Commit(ctx, "o-1"); err != nil {
		t.Fatalf("a 503 then a 200: %v, want the retry's success", err)
	}
	mu.Lock()
	if calls.Load() != 2 || keys[0] != remote.Key("o-1", "commit") || keys[1] != keys[0] {
		t.Errorf("%d calls with keys %q, want 2 with the order's commit key", calls.Load(), keys)
	}
	mu.Unlock()
	mode.Store("hang")
	err = stock.Commit(ctx, "o-2")
	if !errors.Is(err, resilience.ErrTimeout) || !errors.Is(err, orders.ErrOutcomeUnknown) {
		t.Errorf("a service that does not answer: %v, want a timeout of unknown outcome", err)
	}
	if c.BreakerState() != "closed" {
		// One call, two failed attempts: the breaker counts calls.
		t.Logf("breaker %s after one failed call", c.BreakerState())
	}
	mode.Store("down")
	_ = stock.Commit(ctx, "o-3")
	if c.BreakerState() != "open" {
		t.Fatalf("breaker %s after two failed calls, want open", c.BreakerState())
	}
	before := calls.Load()
	err = stock.Commit(ctx, "o-4")
	if !errors.Is(err, resilience.ErrCircuitOpen) || calls.Load() != before {
		t.Errorf("with the breaker open: %v and %d more calls, want ErrCircuitOpen and none", err, calls.Load()-before)
	}
	if errors.Is(err, orders.ErrOutcomeUnknown) {
		t.Errorf("a call the breaker refused is not of unknown outcome: %v", err)
	}
}

// TestPostgres runs the shop's storage-dependent tests on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t, TestPortsContract, TestRemoteAdapterRefusesCallsInsideAWriteTransaction,
		TestSagaPlacesOrdersAcrossTheServices, TestSagaWaitsForAServiceThatIsDown, TestSagaTimeoutCompensates,
		TestChargeCompletesOnThePaymentEvent, TestMixedModeSaga, TestDetailsWithASideDown, TestDetailsInLocalMode, TestOrdersAlikeInLocalAndRemoteMode)
}
