package monolith_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentChargesNeverOvercharge: 200 charges of 1.00 at once against a credit limit of
// 50.00 capture exactly 50. The credit check and the debit are one statement; a module that
// read the outstanding total and then added to it let PostgreSQL capture 64.
func TestConcurrentChargesNeverOvercharge(t *testing.T) {
	s := newShop(t)
	cust := s.customer("cass@example.com", 5_000)
	const clients = 200
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", s.url+"/api/payments", bytes.NewBufferString(
				`{"customer_id":"`+cust+`","amount_cents":100,"reference":"race"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("race-%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	if count[201] != 50 || count[402] != 150 {
		t.Fatalf("statuses %v; want 50 × 201 and 150 × 402 for a limit of fifty charges", count)
	}
	var owed int64
	if err := s.m.DB.Raw(`SELECT outstanding_cents FROM payments_balances WHERE customer_id = ?`, cust).Row().Scan(&owed); err != nil {
		t.Fatal(err)
	}
	if owed != 5_000 {
		t.Errorf("outstanding %d cents, want exactly the limit, 5000", owed)
	}
}
