package payments

import (
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/dryrun"
)

// TestDryRunChargeLeavesNothing: a keyed charge the facade signed as a dry run answers 201
// as a real one would, and leaves no payment, no balance, no outbox event and no
// idempotency record: the same key then charges for real, not replayed.
func TestDryRunChargeLeavesNothing(t *testing.T) {
	secret := []byte("shared")
	opts := quick()
	opts.DryRun = dryrun.NewVerifier(secret, time.Minute, nil)
	s := startService(t, opts)
	cust := s.customer(t, "ada@example.com", 100_000)
	count := func() (n [4]int64) {
		t.Helper()
		for i, table := range []string{"payments_payments", "payments_balances", "ficus_outbox", "ficus_idempotency"} {
			if err := s.srv.DB.Table(table).Count(&n[i]).Error; err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	before := count()
	sig := dryrun.NewSigner(secret, nil).Sign("POST", "/api/payments")
	r := s.Do("POST", "/api/payments", charge(cust, 2_500, "dry"), "Idempotency-Key", "k-dry", dryrun.Header, sig)
	if r.Status != 201 || r.Header.Get(dryrun.Header) != dryrun.Done || r.JSON(t)["amount_cents"].(float64) != 2_500 {
		t.Fatalf("dry charge: %d %v %s", r.Status, r.Header, r.Body)
	}
	if got := count(); got != before {
		t.Fatalf("after a dry charge: %v payments, balances, outbox events, idempotency keys; before %v", got, before)
	}
	real := s.Do("POST", "/api/payments", charge(cust, 2_500, "dry"), "Idempotency-Key", "k-dry")
	if real.Status != 201 || real.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the real charge with the dry run's key: %d %v %s, want a fresh 201", real.Status, real.Header, real.Body)
	}
	if got := count(); got[0] != before[0]+1 || got[3] != before[3]+1 {
		t.Fatalf("after the real charge: %v, before %v", got, before)
	}
}
