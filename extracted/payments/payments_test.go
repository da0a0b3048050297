package payments

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ficus-project/ficus/extracted/internal/apitest"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// service is the payments service on a fresh database (storetest.DSN: SQLite, or PostgreSQL
// under TestPostgres), served on loopback. Its customer copy is fed by handing events to
// the consumer's handler (feed); TestFollowCustomersThroughTheBus feeds it through a bus.
type service struct {
	*apitest.Client
	srv *Server
	reg *prometheus.Registry
}

// quick are options that keep the tests that wait for the copy short.
func quick() Options {
	return Options{CustomerWait: 400 * time.Millisecond, CustomerGrace: 50 * time.Millisecond}
}

func startService(t *testing.T, opts Options) *service {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	srv, err := Open(context.Background(), storetest.DSN(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &service{Client: apitest.Serve(t, srv.Handler()), srv: srv, reg: reg}
}

// metric returns the value of the gauge or counter name whose labels include the given
// ones (name, value pairs), or -1 when there is none.
func (s *service) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
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
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// customerEvent is an event the monolith's customers module would publish.
func customerEvent(t *testing.T, typ, customerID string, data any) event.Event {
	t.Helper()
	e, err := event.New("/monolith/customers", typ, customerID, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func registered(t *testing.T, id, email string, limit int64) event.Event {
	t.Helper()
	return customerEvent(t, contract.TypeCustomerRegistered, id, contract.CustomerRegistered{
		CustomerID: id, Name: "Test", Email: email, CreditLimitCents: limit})
}

func limitChanged(t *testing.T, id string, limit, version int64) event.Event {
	t.Helper()
	return customerEvent(t, contract.TypeCustomerCreditLimitChange, id, contract.CustomerCreditLimitChanged{
		CustomerID: id, CreditLimitCents: limit, Version: version})
}

// feed hands events to the customer copy's consumer handler, as the bus would.
func (s *service) feed(t *testing.T, evs ...event.Event) {
	t.Helper()
	if err := s.srv.customers.handle(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// customer registers a new customer in the copy and returns its id.
func (s *service) customer(t *testing.T, email string, limit int64) string {
	t.Helper()
	id := uuid.NewString()
	s.feed(t, registered(t, id, email, limit))
	return id
}

func charge(customer string, cents int64, reference string) string {
	return `{"customer_id":"` + customer + `","amount_cents":` + strconv.FormatInt(cents, 10) + `,"reference":"` + reference + `"}`
}

// caughtUp makes the copy report a backlog of n, as if it followed a bus.
func (s *service) backlogOf(n uint64) *fakeBacklog {
	f := &fakeBacklog{n: n, asked: make(chan struct{})}
	var b backlogger = f
	s.srv.customers.bus.Store(&b)
	return f
}

// fakeBacklog is a bus that reports a fixed backlog, and closes asked the first time it is
// asked.
type fakeBacklog struct {
	n     uint64
	once  sync.Once
	asked chan struct{}
}

func (f *fakeBacklog) Backlog(context.Context, string) (uint64, error) {
	f.once.Do(func() { close(f.asked) })
	return f.n, nil
}

// TestEveryOperationAnswersAsDocumented drives every payments operation of the contract to a
// success; each answer is checked against the OpenAPI document (apitest).
func TestEveryOperationAnswersAsDocumented(t *testing.T) {
	s := startService(t, quick())
	s.MustDo(200, "GET", "/healthz", "")
	s.MustDo(200, "GET", "/readyz", "")
	cust := s.customer(t, "ada@example.com", 100_000)
	p := s.MustDo(201, "POST", "/api/payments", charge(cust, 2_500, "order-1"))
	if p["customer_id"] != cust || p["amount_cents"].(float64) != 2_500 || p["status"] != Captured || p["refunded_at"] != nil {
		t.Errorf("payment = %v", p)
	}
	s.MustDo(200, "GET", "/api/payments/"+p["id"].(string), "")
	r := s.MustDo(200, "POST", "/api/payments/"+p["id"].(string)+"/refund", "")
	if r["status"] != Refunded || r["refunded_at"] == nil {
		t.Errorf("refunded payment = %v", r)
	}
	for _, op := range s.Unserved("/api/payments") {
		t.Errorf("%s was never exercised to a success", op)
	}
}

// TestErrors: every error the payments operations answer, as the contract says.
func TestErrors(t *testing.T) {
	s := startService(t, quick())
	s.backlogOf(0) // the copy is caught up: a customer it lacks does not exist
	cust := s.customer(t, "ada@example.com", 10_000)
	decliner := s.customer(t, "bob@decline.test", 10_000)
	outage := s.customer(t, "olga@outage.test", 10_000)
	big := charge(cust, 1, strings.Repeat("r", 1<<20))

	tests := []struct {
		name, method, path, body, contentType string
		status                                int
		code, field                           string
	}{
		{"malformed json", "POST", "/api/payments", `{"customer_id":`, "", 400, "malformed_json", ""},
		{"unknown field", "POST", "/api/payments", `{"customer_id":"` + cust + `","amount_cents":1,"reference":"r","tip":5}`, "", 400, "invalid_request", "tip"},
		{"wrong type", "POST", "/api/payments", `{"customer_id":"` + cust + `","amount_cents":"100","reference":"r"}`, "", 400, "invalid_request", "amount_cents"},
		{"zero charge", "POST", "/api/payments", charge(cust, 0, "r"), "", 400, "invalid_request", "amount_cents"},
		{"over the money bound", "POST", "/api/payments", charge(cust, contract.MaxCents+1, "r"), "", 400, "invalid_request", "amount_cents"},
		{"no reference", "POST", "/api/payments", `{"customer_id":"` + cust + `","amount_cents":100}`, "", 400, "invalid_request", "reference"},
		{"no customer", "POST", "/api/payments", `{"amount_cents":100,"reference":"r"}`, "", 400, "invalid_request", "customer_id"},
		{"field in another case", "POST", "/api/payments", `{"Customer_ID":"` + cust + `","amount_cents":100,"reference":"r"}`, "", 400, "invalid_request", "Customer_ID"},
		{"bad idempotency key", "POST", "/api/payments", charge(cust, 100, "r"), "", 400, "invalid_idempotency_key", ""},
		{"wrong content type", "POST", "/api/payments", charge(cust, 100, "r"), "text/plain", 415, "unsupported_media_type", ""},
		{"oversize body", "POST", "/api/payments", big, "", 413, "body_too_large", ""},
		{"unknown payment", "GET", "/api/payments/nope", "", "", 404, "payment_not_found", ""},
		{"refund unknown payment", "POST", "/api/payments/nope/refund", "", "", 404, "payment_not_found", ""},
		{"unknown customer", "POST", "/api/payments", charge("no-such-customer", 100, "r"), "", 404, "customer_not_found", ""},
		{"declined card", "POST", "/api/payments", charge(decliner, 100, "r"), "", 402, "payment_declined", ""},
		{"credit exceeded", "POST", "/api/payments", charge(cust, 10_001, "r"), "", 402, "payment_declined", ""},
		{"gateway outage", "POST", "/api/payments", charge(outage, 100, "r"), "", 503, "gateway_unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			if tt.code == "invalid_idempotency_key" {
				header = []string{"Idempotency-Key", "tab\there"}
			}
			r := s.Do(tt.method, tt.path, tt.body, header...)
			apitest.Problem(t, r, tt.status, tt.code, tt.field)
			if tt.status == 503 && r.Header.Get("Retry-After") != "1" {
				t.Errorf("a 503 without Retry-After: 1 (%q)", r.Header.Get("Retry-After"))
			}
		})
	}
	var n int64
	if err := s.srv.DB.Table("payments_payments").Count(&n).Error; err != nil || n != 0 {
		t.Errorf("refused charges left %d payments (%v)", n, err)
	}
}

// TestCreditCountsMoneyOwedAndRefundsGiveItBack: the credit check counts captured,
// unrefunded payments; a refund gives the credit back, once; a lower limit applies to what
// is already owed.
func TestCreditCountsMoneyOwedAndRefundsGiveItBack(t *testing.T) {
	s := startService(t, quick())
	cust := s.customer(t, "ada@example.com", 10_000)
	first := s.MustDo(201, "POST", "/api/payments", charge(cust, 6_000, "a"))
	apitest.Problem(t, s.Do("POST", "/api/payments", charge(cust, 4_001, "b")), 402, "payment_declined", "")
	s.MustDo(201, "POST", "/api/payments", charge(cust, 4_000, "c"))
	apitest.Problem(t, s.Do("POST", "/api/payments", charge(cust, 1, "d")), 402, "payment_declined", "")
	s.MustDo(200, "POST", "/api/payments/"+first["id"].(string)+"/refund", "")
	s.MustDo(200, "POST", "/api/payments/"+first["id"].(string)+"/refund", "") // a no-op
	s.MustDo(201, "POST", "/api/payments", charge(cust, 6_000, "e"))
	apitest.Problem(t, s.Do("POST", "/api/payments", charge(cust, 1, "f")), 402, "payment_declined", "")

	// The monolith lowers the limit below what is owed: nothing more is charged.
	s.feed(t, limitChanged(t, cust, 5_000, 2))
	r := s.Do("POST", "/api/payments", charge(cust, 1, "g"))
	apitest.Problem(t, r, 402, "payment_declined", "")
	if d := r.JSON(t)["detail"]; d != "payment declined: credit limit exceeded" {
		t.Errorf("detail %q", d)
	}
}

// TestConcurrentChargesNeverOvercharge: 200 charges at once against one credit limit capture
// exactly what it allows, on either engine (the check and the debit are one statement).
func TestConcurrentChargesNeverOvercharge(t *testing.T) {
	s := startService(t, quick())
	cust := s.customer(t, "ada@example.com", 5_000)
	const clients = 200
	statuses := make([]int, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			<-start
			resp, err := http.Post(s.URL+"/api/payments", "application/json", strings.NewReader(charge(cust, 100, "race-"+strconv.Itoa(i))))
			if err != nil {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[201] != 50 || count[402] != 150 {
		t.Fatalf("statuses = %v, want 50×201 and 150×402", count)
	}
	var owed int64
	if err := s.srv.DB.Raw(`SELECT outstanding_cents FROM payments_balances WHERE customer_id = ?`, cust).Scan(&owed).Error; err != nil || owed != 5_000 {
		t.Errorf("outstanding = %d (%v), want 5000", owed, err)
	}
}

// TestIdempotentCharges: a repeat replays, a reused key with another body is 422, a 503
// does not burn its key, and copies racing on one key capture one payment.
func TestIdempotentCharges(t *testing.T) {
	s := startService(t, quick())
	cust := s.customer(t, "ada@example.com", 100_000)
	outage := s.customer(t, "olga@outage.test", 100_000)
	p1 := s.MustDo(201, "POST", "/api/payments", charge(cust, 100, "x"), "Idempotency-Key", "pay-1")
	again := s.Do("POST", "/api/payments", charge(cust, 100, "x"), "Idempotency-Key", "pay-1")
	if again.Status != 201 || again.JSON(t)["id"] != p1["id"] || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %v %s", again.Status, again.Header, again.Body)
	}
	apitest.Problem(t, s.Do("POST", "/api/payments", charge(cust, 200, "x"), "Idempotency-Key", "pay-1"), 422, "idempotency_key_reused", "")
	for i := range 2 {
		r := s.Do("POST", "/api/payments", charge(outage, 100, "x"), "Idempotency-Key", "pay-2")
		apitest.Problem(t, r, 503, "gateway_unavailable", "")
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("attempt %d of a 503 was replayed", i)
		}
	}

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", s.URL+"/api/payments", strings.NewReader(charge(cust, 100, "racing")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "pay-3")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for _, st := range statuses {
		if st != 201 && st != 409 {
			t.Errorf("racing copies answered %v, want 201 or 409 only", statuses)
			break
		}
	}
	var n int64
	if err := s.srv.DB.Table("payments_payments").Where("reference = ?", "racing").Count(&n).Error; err != nil || n != 1 {
		t.Errorf("20 copies of one keyed charge captured %d payments (%v), want 1", n, err)
	}
}

// TestEmittedEventsMatchTheirSchemas: charges and refunds record payment events in the
// service's own outbox, with the service's source, valid against their schemas.
func TestEmittedEventsMatchTheirSchemas(t *testing.T) {
	s := startService(t, quick())
	cust := s.customer(t, "ada@example.com", 100_000)
	p := s.MustDo(201, "POST", "/api/payments", charge(cust, 100, "x"))
	s.MustDo(200, "POST", "/api/payments/"+p["id"].(string)+"/refund", "")
	apitest.Problem(t, s.Do("POST", "/api/payments", charge(cust, 1_000_000, "too much")), 402, "payment_declined", "")
	evs, err := outbox.List(context.Background(), s.srv.DB, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{contract.TypePaymentCaptured, contract.TypePaymentRefunded}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %v", len(evs), want)
	}
	for i, e := range evs {
		if e.Type != want[i] || e.Source != Source || e.Subject != p["id"] {
			t.Errorf("event %d: %s from %s about %s, want %s from %s about %s", i, e.Type, e.Source, e.Subject, want[i], Source, p["id"])
		}
		if err := contract.ValidateEvent(e); err != nil {
			t.Errorf("emitted event breaks its schema: %v", err)
		}
	}
}

// TestPostgres runs the service's suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t, TestEveryOperationAnswersAsDocumented, TestErrors, TestCreditCountsMoneyOwedAndRefundsGiveItBack,
		TestConcurrentChargesNeverOvercharge, TestIdempotentCharges, TestEmittedEventsMatchTheirSchemas,
		TestCustomerEventsApplyOnceInVersionOrder, TestChargeForACustomerNotYetCopied, TestFollowCustomersThroughTheBus,
		TestDryRunChargeLeavesNothing)
}
