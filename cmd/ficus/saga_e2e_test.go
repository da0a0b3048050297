package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/store"
)

// sagaRig is the shop in remote mode as real processes — the embedded bus, the monolith and
// the two extracted services, each `ficus serve` on a socket the test holds — for tests
// that kill them with SIGKILL.
type sagaRig struct {
	t   *testing.T
	dir string
	*servedSet
}

// servedSet is the ficus processes a test runs itself, `ficus serve NAME` each, on sockets the
// test holds (h), so that one killed and started again keeps its address and its clients
// wait in the socket's queue meanwhile.
type servedSet struct {
	t       *testing.T
	h       *heldPorts
	cfgPath string
	env     []string // added to each process's environment

	mu    sync.Mutex
	procs map[string]*process
}

func newServedSet(t *testing.T, h *heldPorts) *servedSet {
	return &servedSet{t: t, h: h, procs: map[string]*process{}}
}

// start runs `ficus serve name` on its held socket and waits until it serves.
func (c *servedSet) start(name string) {
	c.t.Helper()
	cmd := exec.Command(ficusBin, "serve", name, "-c", c.cfgPath)
	cmd.Env = append(os.Environ(), c.env...)
	c.h.pass(cmd)
	p := startFicus(c.t, cmd)
	switch name {
	case "bus":
		p.out.waitFor(c.t, "bus listening", 30*time.Second)
	case "facade":
		p.out.waitFor(c.t, "facade listening on", 30*time.Second)
	default:
		p.out.waitFor(c.t, "msg=serving", 30*time.Second)
	}
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
}

// process is name's process as last started, nil if it never was.
func (c *servedSet) process(name string) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// kill sends SIGKILL to the component's process group and waits until it is gone.
func (c *servedSet) kill(name string) {
	c.t.Helper()
	p := c.process(name)
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-p.done
}

func newSagaRig(t *testing.T, saga string) *sagaRig {
	t.Helper()
	r := &sagaRig{t: t, dir: t.TempDir(), servedSet: newServedSet(t, holdPorts(t, "bus", "monolith", "inventory", "payments"))}
	backend := "timeout: 1s, retry: { attempts: 2, backoff: 20ms, max_backoff: 100ms }, breaker: { consecutive_failures: 5, open_for: 300ms }"
	cfg := fmt.Sprintf(`backends:
  monolith: { url: http://%s }
  inventory: { url: http://%s, %s }
  payments: { url: http://%s, %s }
routes: [{ match: { path: / }, to: monolith }]
monolith:
  listen: %s
  database: sqlite:data/monolith.db
  modules: { inventory: remote, payments: remote }
  saga: { %s }
services:
  inventory: { listen: %s }
  payments: { listen: %s }
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, r.h.addr("monolith"), r.h.addr("inventory"), backend, r.h.addr("payments"), backend, r.h.addr("monolith"), saga,
		r.h.addr("inventory"), r.h.addr("payments"), r.h.addr("bus"))
	r.cfgPath = filepath.Join(r.dir, "config.yaml")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// url is a component's base URL.
func (r *sagaRig) url(name string) string { return "http://" + r.h.addr(name) }

// seed registers customers in the monolith and items in the inventory service, and waits
// for the payments service's copy of the customers.
func (r *sagaRig) seed(customers map[string]int64, items map[string]int) map[string]string {
	r.t.Helper()
	ids := map[string]string{}
	for email, credit := range customers {
		status, body := httpDo("POST", r.url("monolith")+"/api/customers",
			fmt.Sprintf(`{"name":"E2E","email":%q,"credit_limit_cents":%d}`, email, credit))
		if status != 201 {
			r.t.Fatalf("registering %s: %d %s", email, status, body)
		}
		var c struct{ ID string }
		_ = json.Unmarshal([]byte(body), &c)
		ids[email] = c.ID
	}
	for sku, onHand := range items {
		if status, body := httpDo("POST", r.url("inventory")+"/api/inventory/items",
			fmt.Sprintf(`{"sku":%q,"name":"E2E","price_cents":100,"on_hand":%d}`, sku, onHand)); status != 201 {
			r.t.Fatalf("adding %s: %d %s", sku, status, body)
		}
	}
	pollUntil(r.t, "the payments service's customer copy caught up", 30*time.Second, func() (bool, string) {
		status, body := httpDo("GET", r.url("payments")+"/readyz/customers", "")
		return status == 200, body
	})
	return ids
}

// placeUntilAnswered places an order with key, trying again with the same key — as a client
// should — while the monolith is away (no answer, a 5xx, 409 idempotency_in_flight), until
// it answers for good. It returns that answer.
func placeUntilAnswered(ctx context.Context, url, key, body string) (int, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			text := string(b)
			inFlight := resp.StatusCode == 409 && strings.Contains(text, "idempotency_in_flight")
			if resp.StatusCode < 500 && !inFlight {
				return resp.StatusCode, text
			}
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond) // a client's backoff before its retry
	}
	return 0, "gave up: " + fmt.Sprint(ctx.Err())
}

// checkShopInvariants waits until every saga has ended, then checks on the three databases
// that stock is conserved, that every captured payment belongs to exactly one placed order of
// its amount, that no order was charged twice, and that no Idempotency-Key started two orders.
func (r *sagaRig) checkShopInvariants(initial map[string]int, keys int) (placed, cancelled int) {
	r.t.Helper()
	return checkShop(r.t, "sqlite:"+filepath.Join(r.dir, "data", "monolith.db"), "sqlite:"+filepath.Join(r.dir, "data", "payments.db"),
		r.url("inventory"), initial, keys, nil)
}

// checkShop is checkShopInvariants on the monolith's and the payments service's databases
// (DSNs) and the inventory service at inventoryURL. accepted, if given, are the orders the
// clients were answered 201 or 202 for, by id: each must be a saga, and one answered 201
// placed.
func checkShop(t *testing.T, monolithDSN, paymentsDSN, inventoryURL string, initial map[string]int, keys int, accepted map[string]chaosOrder) (placed, cancelled int) {
	t.Helper()
	ctx := context.Background()
	mono, err := store.Open(ctx, monolithDSN, store.Options{Modules: []string{orders.Module}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(mono)
	var sagas []orders.Saga
	pollUntil(t, "every saga ended", 90*time.Second, func() (bool, string) {
		sagas = sagas[:0]
		after := ""
		for {
			page, err := orders.ListSagas(ctx, mono, "", after, 500)
			if err != nil {
				return false, err.Error()
			}
			sagas = append(sagas, page...)
			if len(page) < 500 {
				break
			}
			after = page[len(page)-1].ID
		}
		open := 0
		last := ""
		for _, sg := range sagas {
			if !sg.Terminal() {
				open++
				last = fmt.Sprintf("%s is %s", sg.ID, sg.State)
			}
		}
		return open == 0, fmt.Sprintf("%d of %d sagas open; %s", open, len(sagas), last)
	})
	if len(sagas) > keys {
		t.Errorf("%d sagas for %d idempotency keys", len(sagas), keys)
	}
	byID := map[string]orders.Saga{}
	for _, sg := range sagas {
		byID[sg.ID] = sg
	}
	for id, o := range accepted {
		sg, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("order %s (key %s) was answered %d, but no saga has its id", id, o.key, o.status)
		case o.status == 201 && sg.State != orders.SagaPlaced:
			t.Errorf("order %s was answered 201, but its saga ended %s", id, sg.State)
		}
	}
	byKey := map[string]string{}
	sold := map[string]int{}
	placedBy := map[string]orders.Saga{}
	for _, sg := range sagas {
		if sg.RequestKey == "" {
			t.Errorf("saga %s has no request key", sg.ID)
		} else if other, dup := byKey[sg.RequestKey]; dup {
			t.Errorf("one idempotency key started sagas %s and %s", other, sg.ID)
		}
		byKey[sg.RequestKey] = sg.ID
		status, body := httpDo("GET", inventoryURL+"/api/inventory/reservations/"+sg.ID, "")
		var res struct{ State string }
		_ = json.Unmarshal([]byte(body), &res)
		if sg.State == orders.SagaPlaced {
			placed++
			placedBy[sg.ID] = sg
			if status != 200 || res.State != "committed" {
				t.Errorf("placed order %s: reservation %d %s", sg.ID, status, body)
			}
			for _, l := range sg.Lines {
				sold[l.SKU] += l.Quantity
			}
			continue
		}
		cancelled++
		if status == 200 && (res.State == "held" || res.State == "committed") {
			t.Errorf("cancelled order %s keeps its stock: %s", sg.ID, body)
		}
	}
	for sku, had := range initial {
		status, body := httpDo("GET", inventoryURL+"/api/inventory/items/"+sku, "")
		var it struct {
			OnHand   int `json:"on_hand"`
			Reserved int `json:"reserved"`
		}
		_ = json.Unmarshal([]byte(body), &it)
		if status != 200 || it.Reserved != 0 || it.OnHand+sold[sku] != had {
			t.Errorf("%s: %d %s; want nothing reserved and on hand + %d sold = %d", sku, status, body, sold[sku], had)
		}
	}
	pay, err := store.Open(ctx, paymentsDSN, store.Options{Modules: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(pay)
	var payments []struct {
		ID, Reference, Status string
		AmountCents           int64
	}
	if err := store.Handle(pay, "payments").Raw(`SELECT id, reference, status, amount_cents FROM payments_payments`).Scan(&payments).Error; err != nil {
		t.Fatal(err)
	}
	charged := map[string]int{}
	for _, p := range payments {
		charged[p.Reference]++
		if charged[p.Reference] > 1 {
			t.Errorf("order %s charged twice", p.Reference)
		}
		if p.Status != "captured" {
			continue
		}
		sg, ok := placedBy[p.Reference]
		if !ok || sg.PaymentID != p.ID || sg.TotalCents != p.AmountCents {
			t.Errorf("payment %s of %d is captured for order %s, which is not placed with it (%+v)", p.ID, p.AmountCents, p.Reference, ok)
		}
	}
	for id, sg := range placedBy {
		if sg.TotalCents > 0 && charged[id] != 1 {
			t.Errorf("placed order %s has %d payments", id, charged[id])
		}
	}
	return placed, cancelled
}

// sagaE2EOrders is how many orders TestKillTheMonolithMidSaga places: 1,000 (about 15 s),
// or FICUS_SAGA_E2E_ORDERS (make test-saga-long: 10,000).
func sagaE2EOrders(t *testing.T) int {
	if s := os.Getenv("FICUS_SAGA_E2E_ORDERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100_000 {
			t.Fatalf("FICUS_SAGA_E2E_ORDERS=%q: want 1 to 100000", s)
		}
		return n
	}
	return 1000
}

// TestKillTheMonolithMidSaga: orders are placed by concurrent clients (each with its own
// Idempotency-Key, retried as a client would) while the monolith — the sagas' process — is
// killed with SIGKILL at random moments and started again. Afterwards every saga has ended,
// stock is conserved, every captured payment belongs to exactly one placed order, no order is
// charged twice and no key started two orders.
func TestKillTheMonolithMidSaga(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts real processes for a while; run without -short")
	}
	n := sagaE2EOrders(t)
	r := newSagaRig(t, "reply_within: 500ms, timeout: 30s, lease: 1s, max_backoff: 300ms, compensation_attempts: 100")
	for _, name := range []string{"bus", "inventory", "payments", "monolith"} {
		r.start(name)
	}
	initial := map[string]int{"E2E-A": n / 2, "E2E-B": n / 4}
	ids := r.seed(map[string]int64{"rich@kill.test": 1 << 40, "declined@decline.test": 1 << 40, "modest@kill.test": 20_000}, initial)
	customers := []string{ids["rich@kill.test"], ids["rich@kill.test"], ids["declined@decline.test"], ids["modest@kill.test"]}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next, answered atomic.Int64
	var clients sync.WaitGroup
	for range 8 {
		clients.Go(func() {
			for {
				k := int(next.Add(1))
				if k > n {
					return
				}
				sku := []string{"E2E-A", "E2E-B"}[k%2]
				body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":%d}]}`, customers[k%len(customers)], sku, 1+k%2)
				if status, text := placeUntilAnswered(ctx, r.url("monolith"), fmt.Sprintf("kill-%d", k), body); status == 0 {
					t.Errorf("order %d: %s", k, text)
					return
				}
				answered.Add(1)
			}
		})
	}
	// The killer: SIGKILL the monolith at random moments while orders are placed, and start
	// it again at once (ficus up would, after its backoff).
	kills := 0
	done := make(chan struct{})
	go func() { clients.Wait(); close(done) }()
killing:
	for {
		select {
		case <-done:
			break killing
		case <-time.After(time.Duration(300+rand.IntN(900)) * time.Millisecond):
			r.kill("monolith")
			kills++
			r.start("monolith")
		}
	}
	if answered.Load() != int64(n) {
		t.Fatalf("%d of %d orders answered", answered.Load(), n)
	}
	placed, cancelled := r.checkShopInvariants(initial, n)
	t.Logf("%d orders, %d kills of the monolith: %d placed, %d cancelled", n, kills, placed, cancelled)
	if kills == 0 || placed == 0 || cancelled == 0 {
		t.Errorf("%d kills, %d placed, %d cancelled: the run proved little", kills, placed, cancelled)
	}
}

// TestKillAServiceMidSaga: the inventory service is killed with SIGKILL while orders are
// placed, and started again: the sagas waiting for it finish (placed) once it is back. Then
// the payments service is killed and kept down past the sagas' timeout: they compensate,
// their stock released at once; whether each charge reached the payments service cannot be
// known while it is down (ficus up, like this test, holds its port, so the requests wait in
// its queue and time out), so the refunds wait for it, and once it is back the sagas end
// cancelled (order_timeout) with nothing charged.
func TestKillAServiceMidSaga(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts real processes; run without -short")
	}
	r := newSagaRig(t, "reply_within: 300ms, timeout: 4s, lease: 1s, max_backoff: 200ms, compensation_attempts: 100")
	for _, name := range []string{"bus", "inventory", "payments", "monolith"} {
		r.start(name)
	}
	initial := map[string]int{"E2E-A": 100}
	ids := r.seed(map[string]int64{"rich@svc.test": 1 << 40}, initial)
	body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":"E2E-A","quantity":1}]}`, ids["rich@svc.test"])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	r.kill("inventory")
	var pending []string
	for k := range 5 {
		status, text := placeUntilAnswered(ctx, r.url("monolith"), fmt.Sprintf("inv-%d", k), body)
		if status != 202 {
			t.Fatalf("with inventory down: %d %s, want 202", status, text)
		}
		var o struct{ ID string }
		_ = json.Unmarshal([]byte(text), &o)
		pending = append(pending, o.ID)
	}
	r.start("inventory")
	for _, id := range pending {
		pollUntil(t, "order "+id+" placed once inventory is back", 30*time.Second, func() (bool, string) {
			status, text := httpDo("GET", r.url("monolith")+"/api/orders/"+id, "")
			return status == 200 && strings.Contains(text, `"status":"placed"`), text
		})
	}

	r.kill("payments")
	var timedOut []string
	for k := range 3 {
		status, text := placeUntilAnswered(ctx, r.url("monolith"), fmt.Sprintf("pay-%d", k), body)
		if status != 202 {
			t.Fatalf("with payments down: %d %s, want 202", status, text)
		}
		var o struct{ ID string }
		_ = json.Unmarshal([]byte(text), &o)
		timedOut = append(timedOut, o.ID)
	}
	pollUntil(t, "the timed-out sagas' stock released while payments is down", 30*time.Second, func() (bool, string) {
		status, text := httpDo("GET", r.url("inventory")+"/api/inventory/items/E2E-A", "")
		return status == 200 && strings.Contains(text, `"reserved":0`) && strings.Contains(text, `"on_hand":95`), text
	})
	for _, id := range timedOut {
		status, text := httpDo("GET", r.url("monolith")+"/api/orders/"+id, "")
		if status != 200 || !strings.Contains(text, `"code":"order_timeout"`) || strings.Contains(text, `"status":"placed"`) {
			t.Errorf("order %s with payments down: %d %s", id, status, text)
		}
	}
	r.start("payments")
	for _, id := range timedOut {
		pollUntil(t, "order "+id+" cancelled once payments is back", 60*time.Second, func() (bool, string) {
			status, text := httpDo("GET", r.url("monolith")+"/api/orders/"+id, "")
			return status == 200 && strings.Contains(text, `"status":"cancelled"`) && strings.Contains(text, `"code":"order_timeout"`), text
		})
	}
	placed, cancelled := r.checkShopInvariants(initial, 8)
	if placed != 5 || cancelled != 3 {
		t.Errorf("%d placed and %d cancelled, want 5 and 3", placed, cancelled)
	}
}
