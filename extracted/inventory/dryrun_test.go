package inventory_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/extracted/internal/apitest"
	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

var testSecret = []byte("shared-by-the-facade-and-the-services")

// counts returns the service's items, reservations and outbox events.
func counts(t *testing.T, s *service) [3]int64 {
	t.Helper()
	var out [3]int64
	for i, table := range []string{"inventory_items", "inventory_reservations", "ficus_outbox"} {
		if err := s.srv.DB.Table(table).Count(&out[i]).Error; err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestDryRunLeavesNothing: writes the facade signed as dry runs answer as real ones would
// (the whole request runs, a later read in it included), and leave no row and no outbox
// event; a header the facade did not sign is refused, and nothing runs.
func TestDryRunLeavesNothing(t *testing.T) {
	srv, err := inventory.Open(context.Background(), storetest.DSN(t), inventory.Options{
		DryRun: dryrun.NewVerifier(testSecret, time.Minute, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	s := &service{Client: apitest.Serve(t, srv.Handler()), srv: srv}
	s.item(t, "BOOK-1", 1_500, 10)
	before := counts(t, s)
	sign := dryrun.NewSigner(testSecret, nil)
	dry := func(want int, path, body string) map[string]any {
		t.Helper()
		r := s.Do("POST", path, body, dryrun.Header, sign.Sign("POST", path))
		if r.Status != want || r.Header.Get(dryrun.Header) != dryrun.Done {
			t.Fatalf("dry POST %s: %d %s %s, want %d and %s: %s", path, r.Status, dryrun.Header, r.Header.Get(dryrun.Header), want, dryrun.Done, r.Body)
		}
		return r.JSON(t)
	}
	if it := dry(201, "/api/inventory/items", `{"sku":"NEW-1","name":"New","price_cents":100,"on_hand":3}`); it["on_hand"].(float64) != 3 {
		t.Errorf("dry create answered %v", it)
	}
	if it := dry(200, "/api/inventory/items/BOOK-1/restock", `{"quantity":5}`); it["on_hand"].(float64) != 15 {
		t.Errorf("dry restock answered %v, want 15 on hand", it)
	}
	dry(201, "/api/inventory/reservations", reservation("o-dry", "BOOK-1", 2))
	dry(409, "/api/inventory/items", `{"sku":"BOOK-1","name":"Dup","price_cents":100,"on_hand":3}`)
	if got := counts(t, s); got != before {
		t.Fatalf("after dry runs: %v items, reservations, outbox events; before %v", got, before)
	}
	if it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); it["on_hand"].(float64) != 10 || it["version"].(float64) != 1 {
		t.Errorf("the item after dry runs: %v, want untouched", it)
	}
	s.MustDo(404, "GET", "/api/inventory/items/NEW-1", "")

	for name, value := range map[string]string{
		"unsigned":            "yes",
		"another secret":      dryrun.NewSigner([]byte("guess"), nil).Sign("POST", "/api/inventory/items/BOOK-1/restock"),
		"another path":        sign.Sign("POST", "/api/inventory/items/OTHER/restock"),
		"signed too long ago": dryrun.NewSigner(testSecret, func() time.Time { return time.Now().Add(-time.Hour) }).Sign("POST", "/api/inventory/items/BOOK-1/restock"),
	} {
		req, _ := http.NewRequest("POST", s.URL+"/api/inventory/items/BOOK-1/restock", strings.NewReader(`{"quantity":5}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(dryrun.Header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s header: %d, want 403", name, resp.StatusCode)
		}
	}
	if got := counts(t, s); got != before {
		t.Fatalf("after refused headers: %v, before %v", got, before)
	}
	if it := s.MustDo(200, "GET", "/api/inventory/items/BOOK-1", ""); it["on_hand"].(float64) != 10 {
		t.Errorf("a refused dry run ran: %v", it)
	}
	evs, err := outbox.List(context.Background(), s.srv.DB, 0, 100)
	if err != nil || len(evs) != 1 {
		t.Errorf("%d outbox events (%v), want the one of the real create", len(evs), err)
	}
}

// TestNoSecretRefusesDryRuns: a service given no verifier refuses every dry-run header
// rather than run the request for real.
func TestNoSecretRefusesDryRuns(t *testing.T) {
	s := newService(t)
	req, _ := http.NewRequest("POST", s.URL+"/api/inventory/items", strings.NewReader(`{"sku":"X","name":"X","price_cents":1,"on_hand":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(dryrun.Header, dryrun.NewSigner(testSecret, nil).Sign("POST", "/api/inventory/items"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("%d, want 403", resp.StatusCode)
	}
	s.MustDo(404, "GET", "/api/inventory/items/X", "")
}
