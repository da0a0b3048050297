package inventory_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ficus-project/ficus/extracted/internal/apitest"
	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// service is the inventory service on a fresh database (storetest.DSN: SQLite, or
// PostgreSQL under TestPostgres), served on loopback.
type service struct {
	*apitest.Client
	srv *inventory.Server
}

func newService(t *testing.T) *service {
	t.Helper()
	srv, err := inventory.Open(context.Background(), storetest.DSN(t), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &service{Client: apitest.Serve(t, srv.Handler()), srv: srv}
}

func (s *service) item(t *testing.T, sku string, price, onHand int) {
	t.Helper()
	s.MustDo(201, "POST", "/api/inventory/items", `{"sku":"`+sku+`","name":"Thing","price_cents":`+strconv.Itoa(price)+`,"on_hand":`+strconv.Itoa(onHand)+`}`)
}

func reservation(orderID, sku string, qty int) string {
	return `{"order_id":"` + orderID + `","lines":[{"sku":"` + sku + `","quantity":` + strconv.Itoa(qty) + `}]}`
}

// TestEveryOperationAnswersAsDocumented drives every inventory operation of the contract to
// a success; each answer is checked against the OpenAPI document (apitest).
func TestEveryOperationAnswersAsDocumented(t *testing.T) {
	s := newService(t)
	s.MustDo(200, "GET", "/healthz", "")
	s.MustDo(200, "GET", "/readyz", "")
	s.item(t, "BOOK-1", 1_500, 10)
	it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	if it["available"].(float64) != 10 || it["version"].(float64) != 1 {
		t.Errorf("new item = %v", it)
	}
	s.MustDo(200, "GET", "/api/inventory/items", "")
	s.MustDo(200, "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":5}`)
	r := s.MustDo(201, "POST", "/api/inventory/reservations", reservation("ext-1", "BOOK-1", 2))
	if line := r["lines"].([]any)[0].(map[string]any); line["unit_price_cents"].(float64) != 1_500 {
		t.Errorf("reservation line = %v, want its unit price", line)
	}
	s.MustDo(200, "GET", "/api/inventory/reservations/ext-1", "")
	s.MustDo(200, "POST", "/api/inventory/reservations/ext-1/commit", "")
	s.MustDo(200, "POST", "/api/inventory/reservations/ext-1/return", "")
	s.MustDo(201, "POST", "/api/inventory/reservations", reservation("ext-2", "BOOK-1", 1))
	s.MustDo(200, "POST", "/api/inventory/reservations/ext-2/release", "")
	for _, op := range s.Unserved("/api/inventory") {
		t.Errorf("%s was never exercised to a success", op)
	}
	if got := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); got["on_hand"].(float64) != 15 || got["reserved"].(float64) != 0 {
		t.Errorf("after sale, return and release: %v, want 15 on hand, 0 reserved", got)
	}
	// A service serves its own capability, nothing else (an orders path has no inventory
	// answer to check against the contract, so it is asked for without the checking client).
	resp, err := http.Get(s.URL + "/api/orders/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /api/orders/x from the inventory service: %d, want 404", resp.StatusCode)
	}
}

// TestErrors: every error the inventory operations answer, as the contract says.
func TestErrors(t *testing.T) {
	s := newService(t)
	s.item(t, "BOOK-1", 1_500, 3)
	s.MustDo(201, "POST", "/api/inventory/reservations", reservation("held-1", "BOOK-1", 1))
	s.MustDo(201, "POST", "/api/inventory/reservations", reservation("sold-1", "BOOK-1", 1))
	s.MustDo(200, "POST", "/api/inventory/reservations/sold-1/commit", "")
	big := `{"sku":"BIG-1","name":"` + strings.Repeat("x", 1<<20) + `","price_cents":1,"on_hand":1}`

	tests := []struct {
		name, method, path, body, contentType string
		status                                int
		code, field                           string
	}{
		{"malformed json", "POST", "/api/inventory/items", `{"sku":`, "", 400, "malformed_json", ""},
		{"trailing data", "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":1} {}`, "", 400, "malformed_json", ""},
		{"unknown field", "POST", "/api/inventory/items", `{"sku":"A-1","name":"a","price_cents":1,"on_hand":1,"colour":"red"}`, "", 400, "invalid_request", "colour"},
		{"wrong type", "POST", "/api/inventory/items", `{"sku":"A-1","name":"a","price_cents":"ten","on_hand":1}`, "", 400, "invalid_request", "price_cents"},
		{"missing field", "POST", "/api/inventory/items", `{"sku":"A-1","name":"a","on_hand":1}`, "", 400, "invalid_request", "price_cents"},
		{"negative price", "POST", "/api/inventory/items", `{"sku":"A-1","name":"a","price_cents":-1,"on_hand":1}`, "", 400, "invalid_request", "price_cents"},
		{"bad sku", "POST", "/api/inventory/items", `{"sku":"a b","name":"a","price_cents":1,"on_hand":1}`, "", 400, "invalid_request", "sku"},
		{"field in another case", "POST", "/api/inventory/items", `{"SKU":"A-1","name":"a","price_cents":1,"on_hand":1}`, "", 400, "invalid_request", "SKU"},
		{"duplicate key", "POST", "/api/inventory/reservations", `{"order_id":"o","lines":[{"sku":"BOOK-1","quantity":-5,"quantity":1}]}`, "", 400, "invalid_request", "lines[0].quantity"},
		{"negative restock", "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":-5}`, "", 400, "invalid_request", "quantity"},
		{"zero quantity", "POST", "/api/inventory/reservations", reservation("o", "BOOK-1", 0), "", 400, "invalid_request", "lines[0].quantity"},
		{"no lines", "POST", "/api/inventory/reservations", `{"order_id":"o","lines":[]}`, "", 400, "invalid_request", "lines"},
		{"no order id", "POST", "/api/inventory/reservations", `{"lines":[{"sku":"BOOK-1","quantity":1}]}`, "", 400, "invalid_request", "order_id"},
		{"duplicate sku", "POST", "/api/inventory/reservations", `{"order_id":"o","lines":[{"sku":"BOOK-1","quantity":1},{"sku":"BOOK-1","quantity":1}]}`, "", 400, "invalid_request", "lines[1].sku"},
		{"bad limit", "GET", "/api/inventory/items?limit=201", "", "", 400, "invalid_request", "limit"},
		{"made-up cursor", "GET", "/api/inventory/items?cursor=bogus", "", "", 400, "invalid_request", "cursor"},
		{"wrong content type", "POST", "/api/inventory/items", `{}`, "text/plain", 415, "unsupported_media_type", ""},
		{"a +json content type", "POST", "/api/inventory/reservations", reservation("o", "BOOK-1", 1), "application/problem+json", 415, "unsupported_media_type", ""},
		{"oversize body", "POST", "/api/inventory/items", big, "", 413, "body_too_large", ""},
		{"unknown item", "GET", "/api/inventory/items/NOPE", "", "", 404, "item_not_found", ""},
		{"restock unknown item", "POST", "/api/inventory/items/NOPE/restock", `{"quantity":1}`, "", 404, "item_not_found", ""},
		{"reserve unknown item", "POST", "/api/inventory/reservations", reservation("o", "NOPE", 1), "", 404, "item_not_found", ""},
		{"unknown reservation", "GET", "/api/inventory/reservations/nope", "", "", 404, "reservation_not_found", ""},
		{"commit unknown reservation", "POST", "/api/inventory/reservations/nope/commit", "", "", 404, "reservation_not_found", ""},
		{"sku taken", "POST", "/api/inventory/items", `{"sku":"BOOK-1","name":"a","price_cents":1,"on_hand":1}`, "", 409, "sku_taken", ""},
		{"insufficient stock", "POST", "/api/inventory/reservations", reservation("o", "BOOK-1", 2), "", 409, "insufficient_stock", ""},
		{"the same lines again", "POST", "/api/inventory/reservations", reservation("held-1", "BOOK-1", 1), "", 201, "", ""},
		{"reservation exists", "POST", "/api/inventory/reservations", `{"order_id":"held-1","lines":[{"sku":"BOOK-1","quantity":1},{"sku":"BOOK-2","quantity":1}]}`, "", 409, "reservation_exists", ""},
		{"return a hold", "POST", "/api/inventory/reservations/held-1/return", "", "", 409, "reservation_state", ""},
		{"release a sale", "POST", "/api/inventory/reservations/sold-1/release", "", "", 409, "reservation_committed", ""},
		{"restock past the stock bound", "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":` + strconv.Itoa(contract.MaxStock) + `}`, "", 422, "limit_exceeded", "quantity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			r := s.Do(tt.method, tt.path, tt.body, header...)
			if tt.code == "" {
				if r.Status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
				}
				return
			}
			apitest.Problem(t, r, tt.status, tt.code, tt.field)
		})
	}
	// None of the refusals changed stock: 3 on hand, one sold (2 left), one held.
	if it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); it["on_hand"].(float64) != 2 || it["reserved"].(float64) != 1 {
		t.Errorf("refused requests changed stock: %v", it)
	}
}

// TestReleasingSoldStockIsRefused: release ends a hold and never puts sold stock back on
// hand; return undoes a sale, once.
func TestReleasingSoldStockIsRefused(t *testing.T) {
	s := newService(t)
	s.item(t, "BOOK-1", 1_500, 10)
	stock := func() (onHand, reserved float64) {
		it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
		return it["on_hand"].(float64), it["reserved"].(float64)
	}
	s.MustDo(201, "POST", "/api/inventory/reservations", reservation("o-1", "BOOK-1", 3))
	s.MustDo(200, "POST", "/api/inventory/reservations/o-1/commit", "")
	apitest.Problem(t, s.Do("POST", "/api/inventory/reservations/o-1/release", ""), 409, "reservation_committed", "")
	if on, res := stock(); on != 7 || res != 0 {
		t.Fatalf("after the sale and a refused release: %v on hand, %v reserved", on, res)
	}
	s.MustDo(200, "POST", "/api/inventory/reservations/o-1/return", "")
	s.MustDo(200, "POST", "/api/inventory/reservations/o-1/return", "") // a no-op
	if on, _ := stock(); on != 10 {
		t.Errorf("after the return: %v on hand, want 10 (returned once)", on)
	}
	apitest.Problem(t, s.Do("POST", "/api/inventory/reservations/o-1/commit", ""), 409, "reservation_state", "")
}

// TestConcurrentReservationsNeverOversell: 200 reservations at once for 50 units hold
// exactly 50, on either engine.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	s := newService(t)
	s.item(t, "HOT-1", 100, 50)
	const clients = 200
	statuses := make([]int, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			<-start
			resp, err := http.Post(s.URL+"/api/inventory/reservations", "application/json",
				strings.NewReader(reservation("race-"+strconv.Itoa(i), "HOT-1", 1)))
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
	if count[201] != 50 || count[409] != 150 {
		t.Fatalf("statuses = %v, want 50×201 and 150×409", count)
	}
	if it := s.MustDo(200, "GET", "/api/inventory/items/HOT-1", ""); it["reserved"].(float64) != 50 || it["available"].(float64) != 0 {
		t.Errorf("stock = %v, want 50 reserved, 0 available", it)
	}
}

// TestListsArePaged: items come by SKU, a page at a time, and an item added to a page
// already read shifts none of the next.
func TestListsArePaged(t *testing.T) {
	s := newService(t)
	for _, sku := range []string{"E-1", "A-1", "C-1", "B-1", "D-1"} {
		s.item(t, sku, 100, 1)
	}
	var skus []string
	query := "/api/inventory/items?limit=2"
	for range 10 {
		p := s.MustDo(200, "GET", query, "")
		for _, it := range p["items"].([]any) {
			skus = append(skus, it.(map[string]any)["sku"].(string))
		}
		next, _ := p["next_cursor"].(string)
		if next == "" {
			break
		}
		if len(skus) == 2 {
			s.item(t, "AA-1", 100, 1)
		}
		query = "/api/inventory/items?limit=2&cursor=" + url.QueryEscape(next)
	}
	if got := strings.Join(skus, ","); got != "A-1,B-1,C-1,D-1,E-1" {
		t.Errorf("items by page: %s", got)
	}
}

// TestEmittedEventsMatchTheirSchemas: every stock change records a stock_changed event in
// the service's own outbox, with the service's source, valid against its schema, whose
// absolute figures and version end where the item is.
func TestEmittedEventsMatchTheirSchemas(t *testing.T) {
	s := newService(t)
	s.item(t, "BOOK-1", 1_500, 10)
	s.MustDo(200, "POST", "/api/inventory/items/BOOK-1/restock", `{"quantity":5}`)
	s.MustDo(201, "POST", "/api/inventory/reservations", reservation("o-1", "BOOK-1", 2))
	s.MustDo(200, "POST", "/api/inventory/reservations/o-1/commit", "")
	s.MustDo(200, "POST", "/api/inventory/reservations/o-1/return", "")
	evs, err := outbox.List(context.Background(), s.srv.DB, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("%d events for 5 stock changes", len(evs))
	}
	var last contract.StockChanged
	for _, e := range evs {
		if e.Type != contract.TypeStockChanged || e.Source != inventory.Source || e.Subject != "BOOK-1" {
			t.Errorf("event %s from %s about %s, want %s from %s about BOOK-1", e.Type, e.Source, e.Subject, contract.TypeStockChanged, inventory.Source)
		}
		if err := contract.ValidateEvent(e); err != nil {
			t.Errorf("emitted event breaks its schema: %v", err)
		}
		var sc contract.StockChanged
		if err := e.Decode(&sc); err != nil {
			t.Fatal(err)
		}
		if sc.Version <= last.Version {
			t.Errorf("stock_changed version went from %d to %d", last.Version, sc.Version)
		}
		last = sc
	}
	it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", "")
	if last.OnHand != int(it["on_hand"].(float64)) || last.Version != int64(it["version"].(float64)) {
		t.Errorf("last stock_changed %+v does not match the item %v", last, it)
	}
}

// TestPostgres runs the service's suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t, TestEveryOperationAnswersAsDocumented, TestErrors, TestReleasingSoldStockIsRefused,
		TestConcurrentReservationsNeverOversell, TestListsArePaged, TestEmittedEventsMatchTheirSchemas, TestDryRunLeavesNothing)
}
