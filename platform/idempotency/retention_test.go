package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/retention"
)

// TestPlainServerErrorIsNotStored: a handler failing with a plain error (a 500, not an
// HTTPError) leaves its key free, so the client's retry runs the handler again instead of
// getting the 500 replayed.
func TestPlainServerErrorIsNotStored(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	var broken atomic.Bool
	broken.Store(true)
	s.effect = func(context.Context, string) error {
		if broken.Load() {
			return errors.New("disk on fire")
		}
		return nil
	}
	for i := range 2 {
		st, h, b := post(t, s.url, "k1", `{"a":1}`)
		if st != 500 || h.Get(idempotency.ReplayedHeader) != "" {
			t.Fatalf("attempt %d while broken: %d %s (replayed %q), want a fresh 500", i+1, st, b, h.Get(idempotency.ReplayedHeader))
		}
	}
	broken.Store(false)
	if st, h, b := post(t, s.url, "k1", `{"a":1}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("retry once fixed: %d %s, want a fresh 201", st, b)
	}
	if st, h, _ := post(t, s.url, "k1", `{"a":1}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("repeat of the success: %d, want the stored 201", st)
	}
	if n := s.calls.Load(); n != 3 {
		t.Errorf("handler ran %d times, want 3 (two failures, one success)", n)
	}
}

// TestKeysExpire: a key is replayed until its retention has passed since its first request;
// once pruned, a repeat is a new request and runs again, even with another body.
func TestKeysExpire(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	s := newServer(t, idempotency.Options{Now: now})
	pruner := retention.NewPruner(s.db, retention.Options{Now: now}, idempotency.PruneRule(24*time.Hour))
	prune := func() int64 {
		t.Helper()
		res, err := pruner.Round(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return res.Pruned["ficus_idempotency"]
	}

	post(t, s.url, "k1", `{"a":1}`)
	clock.Add(int64(23 * time.Hour))
	if n := prune(); n != 0 {
		t.Fatalf("pruned %d keys 23h in, want 0", n)
	}
	if st, h, _ := post(t, s.url, "k1", `{"a":1}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("repeat within the retention: %d, want the stored 201", st)
	}
	clock.Add(int64(2 * time.Hour))
	if n := prune(); n != 1 {
		t.Fatalf("pruned %d keys 25h in, want 1", n)
	}
	if st, h, b := post(t, s.url, "k1", `{"a":2}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("repeat after expiry: %d %s, want a new request's 201", st, b)
	}
	if n := s.calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

// TestLiveClaimsAreNotPruned: a claim whose request may still be running — within its lease,
// or abandoned less than the retention ago — is kept, so its key still protects the request;
// one abandoned longer ago (a process that crashed between claiming and answering, in
// Claimed mode) is deleted, which changes nothing for a repeat: it would have taken the claim
// over and run again all the same.
func TestLiveClaimsAreNotPruned(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte("POST /things\n{}"))
	claims := map[string]time.Time{ // key → created_at; each leased for 5m
		"k-running":  now.Add(-time.Minute),
		"k-recent":   now.Add(-50 * time.Minute),
		"k-forsaken": now.Add(-30 * 24 * time.Hour),
	}
	for key, at := range claims {
		err := s.db.Exec(`INSERT INTO ficus_idempotency (scope, key, request_hash, state, created_at, locked_until)
			VALUES (?, ?, ?, 'in_flight', ?, ?)`, "POST /things", key, hex.EncodeToString(sum[:]), at, at.Add(5*time.Minute)).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := retention.NewPruner(s.db, retention.Options{}, idempotency.PruneRule(time.Hour)).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := s.db.Table("ficus_idempotency").Order("key").Pluck("key", &left).Error; err != nil {
		t.Fatal(err)
	}
	if strings.Join(left, ",") != "k-recent,k-running" || res.Pruned["ficus_idempotency"] != 1 {
		t.Errorf("claims left %v (%d pruned), want k-recent and k-running", left, res.Pruned["ficus_idempotency"])
	}
}
