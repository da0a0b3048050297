package payments

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ficus-project/ficus/extracted/internal/apitest"
	"github.com/ficus-project/ficus/extracted/payments/internal/db"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
)

// copied returns the copy's row for a customer: its credit limit, version and email ("" for
// none yet), and whether it has one.
func (s *service) copied(t *testing.T, id string) (limit, version int64, email string, ok bool) {
	t.Helper()
	var rows []struct {
		CreditLimitCents, Version int64
		Email                     *string
	}
	if err := s.srv.DB.Raw(`SELECT credit_limit_cents, version, email FROM payments_customers WHERE customer_id = ?`, id).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		return 0, 0, "", false
	}
	if rows[0].Email != nil {
		email = *rows[0].Email
	}
	return rows[0].CreditLimitCents, rows[0].Version, email, true
}

// TestCustomerEventsApplyOnceInVersionOrder: the copy applies each event once (a redelivery
// changes nothing), keeps the newest version whatever order events come in, and parks an
// event that breaks its schema rather than retrying it for ever.
func TestCustomerEventsApplyOnceInVersionOrder(t *testing.T) {
	s := startService(t, quick())
	id := uuid.NewString()
	reg1 := registered(t, id, "ada@example.com", 1_000)
	s.feed(t, reg1, limitChanged(t, id, 3_000, 3))
	s.feed(t, limitChanged(t, id, 2_000, 2)) // late, and older than what the copy has
	if limit, version, email, _ := s.copied(t, id); limit != 3_000 || version != 3 || email != "ada@example.com" {
		t.Errorf("after v1, v3, then v2: limit %d version %d email %q; want 3000, 3, ada@example.com", limit, version, email)
	}
	// A redelivered event (same id) is not applied again: the registration would otherwise
	// not change the limit anyway, so redeliver the change to v3 after a newer one.
	v4 := limitChanged(t, id, 4_000, 4)
	s.feed(t, v4)
	s.feed(t, v4, reg1)
	if limit, version, _, _ := s.copied(t, id); limit != 4_000 || version != 4 {
		t.Errorf("after a redelivery: limit %d version %d; want 4000, 4", limit, version)
	}
	if got := s.metric(t, "ficus_payments_customer_copy_events_total", "result", "applied"); got != 3 {
		t.Errorf("applied = %v, want 3 (v1, v3, v4)", got)
	}
	if got := s.metric(t, "ficus_payments_customer_copy_events_total", "result", "stale"); got != 1 {
		t.Errorf("stale = %v, want 1 (v2)", got)
	}

	// A change that arrives before the registration: the copy keeps its limit, and the
	// customer cannot be charged until the registration (with the email) arrives.
	early := uuid.NewString()
	s.feed(t, limitChanged(t, early, 9_000, 2))
	if _, err := db.Payer(s.srv.DB, early); !errors.Is(err, ErrCustomerNotFound) {
		t.Errorf("a customer known only from a credit change can be charged: %v", err)
	}
	s.feed(t, registered(t, early, "late@example.com", 500))
	if limit, version, email, _ := s.copied(t, early); limit != 9_000 || version != 2 || email != "late@example.com" {
		t.Errorf("registration after v2: limit %d version %d email %q; want 9000, 2, late@example.com", limit, version, email)
	}

	// An event that breaks its schema is refused, and changes nothing (through a bus it is
	// dead-lettered at once: TestFollowCustomersThroughTheBus).
	err := s.srv.customers.handle(context.Background(), []event.Event{badEvent(t, id)})
	if err == nil || !strings.Contains(err.Error(), "credit_limit_cents") {
		t.Fatalf("a negative credit limit was applied: %v", err)
	}
	if limit, _, _, _ := s.copied(t, id); limit != 4_000 {
		t.Errorf("the bad event changed the copy: limit %d", limit)
	}
}

// badEvent is a credit_limit_changed event that breaks its schema (a negative limit).
func badEvent(t *testing.T, id string) event.Event {
	t.Helper()
	return customerEvent(t, contract.TypeCustomerCreditLimitChange, id, map[string]any{"customer_id": id, "credit_limit_cents": -1, "version": 5})
}

// TestChargeForACustomerNotYetCopied is the decision extracted/README.md documents: a charge
// for a customer the copy lacks waits for it while the copy is behind; it is 404 when the
// copy is caught up without it (as from the monolith), and 503 customer_not_yet_known,
// which claims no idempotency key, when the copy stays behind or cannot tell.
func TestChargeForACustomerNotYetCopied(t *testing.T) {
	t.Run("it arrives while the charge waits", func(t *testing.T) {
		s := startService(t, Options{CustomerWait: 10 * time.Second, CustomerGrace: 10 * time.Millisecond})
		behind := s.backlogOf(1)
		id := uuid.NewString()
		done := make(chan apitest.Response, 1)
		go func() { done <- s.Do("POST", "/api/payments", charge(id, 100, "early"), "Idempotency-Key", "k-1") }()
		select {
		case <-behind.asked: // the charge missed the customer and asked how far behind the copy is
		case r := <-done:
			t.Fatalf("the charge did not wait: %d %s", r.Status, r.Body)
		case <-time.After(10 * time.Second):
			t.Fatal("the charge never asked for the copy's backlog")
		}
		started := time.Now()
		s.feed(t, registered(t, id, "ada@example.com", 1_000))
		select {
		case r := <-done:
			if r.Status != 201 {
				t.Fatalf("status %d, want 201: %s", r.Status, r.Body)
			}
			if d := time.Since(started); d > 5*time.Second {
				t.Errorf("the charge took %s after the customer arrived: it was not woken", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the charge did not finish after its customer arrived")
		}
		if got := s.metric(t, "ficus_payments_customer_waits_total", "outcome", "arrived"); got != 1 {
			t.Errorf("waits{arrived} = %v, want 1", got)
		}
	})
	t.Run("the copy is caught up without it", func(t *testing.T) {
		s := startService(t, Options{CustomerWait: 10 * time.Second, CustomerGrace: 100 * time.Millisecond})
		s.backlogOf(0)
		started := time.Now()
		apitest.Problem(t, s.Do("POST", "/api/payments", charge("no-such-customer", 100, "r")), 404, "customer_not_found", "")
		if d := time.Since(started); d < 100*time.Millisecond || d > 5*time.Second {
			t.Errorf("answered after %s: want the grace period (100ms), not the whole wait (10s)", d)
		}
	})
	t.Run("the copy stays behind", func(t *testing.T) {
		s := startService(t, quick())
		s.backlogOf(3)
		id := uuid.NewString()
		r := s.Do("POST", "/api/payments", charge(id, 100, "r"), "Idempotency-Key", "k-2")
		apitest.Problem(t, r, 503, "customer_not_yet_known", "")
		if r.Header.Get("Retry-After") != "1" || !strings.Contains(string(r.Body), "3 customer events still to apply") {
			t.Errorf("Retry-After %q, body %s", r.Header.Get("Retry-After"), r.Body)
		}
		// The retry, once the customer has arrived, is charged: the key was not burned.
		s.feed(t, registered(t, id, "ada@example.com", 1_000))
		again := s.Do("POST", "/api/payments", charge(id, 100, "r"), "Idempotency-Key", "k-2")
		if again.Status != 201 || again.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("the retry: %d replayed=%q %s", again.Status, again.Header.Get("Idempotent-Replayed"), again.Body)
		}
	})
	t.Run("the copy cannot tell", func(t *testing.T) {
		s := startService(t, quick()) // not following any bus
		r := s.Do("POST", "/api/payments", charge(uuid.NewString(), 100, "r"))
		apitest.Problem(t, r, 503, "customer_not_yet_known", "")
		if !strings.Contains(string(r.Body), "cannot tell") {
			t.Errorf("the problem does not say why: %s", r.Body)
		}
	})
}

// TestFollowCustomersThroughTheBus feeds the copy from a real (embedded) bus: customer events
// published there reach the copy through the durable consumer and the inbox, the copy's
// freshness shows on /readyz/customers and in the metrics, and a customer registered on the
// bus can be charged.
func TestFollowCustomersThroughTheBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, stop, err := bus.StartEmbedded(ctx, config.Events{Embedded: config.Embedded{
		Listen: "127.0.0.1:0", Store: filepath.Join(t.TempDir(), "nats")}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	opts := quick()
	opts.BacklogInterval = 10 * time.Millisecond
	s := startService(t, opts)

	status := func() (int, CopyStatus) {
		resp, err := http.Get(s.URL + "/readyz/customers")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st CopyStatus
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("/readyz/customers: %v: %s", err, b)
		}
		return resp.StatusCode, st
	}
	if code, st := status(); code != 503 || st.Status != CopyUnknown {
		t.Errorf("before following: %d %+v, want 503 unknown", code, st)
	}

	b, err := bus.Connect(ctx, events, bus.Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	id := uuid.NewString()
	// Published before the service follows: the durable consumer starts from the stream's
	// beginning, so nothing published earlier is missed.
	if err := b.Publish(ctx, registered(t, id, "ada@example.com", 1_000)); err != nil {
		t.Fatal(err)
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- s.srv.FollowCustomers(followCtx, b) }()
	t.Cleanup(func() {
		stopFollowing()
		if err := <-followed; err != nil {
			t.Errorf("FollowCustomers: %v", err)
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, st := status()
		if code == 200 && st.Status == CopyCaughtUp && st.Backlog != nil && *st.Backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy did not catch up: %d %+v", code, st)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	s.MustDo(201, "POST", "/api/payments", charge(id, 1_000, "through the bus"))
	if err := b.Publish(ctx, limitChanged(t, id, 2_000, 2)); err != nil {
		t.Fatal(err)
	}
	for {
		if limit, _, _, _ := s.copied(t, id); limit == 2_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the credit limit change never reached the copy")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	s.MustDo(201, "POST", "/api/payments", charge(id, 1_000, "within the new limit"))

	// An event that breaks its schema is parked in the dead-letter stream after one attempt,
	// not retried, and the copy goes on.
	bad := badEvent(t, id)
	if err := b.Publish(ctx, bad); err != nil {
		t.Fatal(err)
	}
	for {
		dls, err := b.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 && dls[0].Event.ID == bad.ID {
			if dls[0].Consumer != CustomersConsumer || dls[0].Attempts != 1 {
				t.Errorf("dead letter by %s after %d attempts, want %s after 1", dls[0].Consumer, dls[0].Attempts, CustomersConsumer)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bad event was not dead-lettered: %+v", dls)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if limit, _, _, _ := s.copied(t, id); limit != 2_000 {
		t.Errorf("the bad event changed the copy: limit %d", limit)
	}

	if got := s.metric(t, "ficus_payments_customer_copy_following"); got != 1 {
		t.Errorf("following gauge = %v, want 1", got)
	}
	// The gauge is measured every BacklogInterval: it reaches 0 once a measurement follows
	// the dead-lettered event's termination.
	for got := s.metric(t, "ficus_payments_customer_copy_backlog"); got != 0; got = s.metric(t, "ficus_payments_customer_copy_backlog") {
		if time.Now().After(deadline) {
			t.Fatalf("backlog gauge = %v, want 0", got)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if got := s.metric(t, "ficus_payments_customer_copy_last_event_timestamp_seconds"); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last event gauge = %v, want about now", got)
	}
}
