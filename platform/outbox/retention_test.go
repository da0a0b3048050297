package outbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/retention"
)

// TestPruneRuleDeletesOnlyOldSentRows: published rows go once they were sent longer ago than
// the retention; rows not published yet stay however old they are.
func TestPruneRuleDeletesOnlyOldSentRows(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	var clock atomic.Int64
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }

	pub := &fakePublisher{}
	stop := run(t, NewRelay(db, pub, RelayOptions{PollInterval: 5 * time.Millisecond, Now: now}))
	early, later, unsent := newEvents(t, 5), newEvents(t, 3), newEvents(t, 2)
	add(t, db, early...)
	waitFor(t, "the first rows sent", func() bool { return pending(t, db) == 0 })
	clock.Add(int64(2 * time.Hour))
	add(t, db, later...)
	waitFor(t, "the later rows sent", func() bool { return pending(t, db) == 0 })
	stop()
	add(t, db, unsent...) // Recorded, never published: the bus is down for good.

	remaining := func(at time.Duration) []event.Event {
		t.Helper()
		p := retention.NewPruner(db, retention.Options{BatchSize: 2, MaxBatches: 100, Now: func() time.Time { return t0.Add(at) }},
			PruneRule(2*time.Hour))
		if _, err := p.Round(ctx); err != nil {
			t.Fatal(err)
		}
		evs, err := List(ctx, db, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	want := func(got []event.Event, wants ...[]event.Event) {
		t.Helper()
		var ids []string
		for _, w := range wants {
			for _, e := range w {
				ids = append(ids, e.ID)
			}
		}
		if len(got) != len(ids) {
			t.Fatalf("%d rows left, want %d", len(got), len(ids))
		}
		for i := range ids {
			if got[i].ID != ids[i] {
				t.Fatalf("row %d left is %s, want %s", i, got[i].ID, ids[i])
			}
		}
	}
	want(remaining(time.Hour), early, later, unsent) // nothing sent 2h ago yet
	want(remaining(3*time.Hour), later, unsent)      // the early rows were sent 3h ago
	want(remaining(100*time.Hour), unsent)           // every sent row is old now
	if n := pending(t, db); n != int64(len(unsent)) {
		t.Errorf("backlog = %d after pruning, want the %d unsent rows", n, len(unsent))
	}
}

func TestPruneRuleDefault(t *testing.T) {
	if r := PruneRule(0); r.Keep != DefaultRetention || r.Table != Table {
		t.Errorf("PruneRule(0) = %s on %s, want %s on %s", r.Keep, r.Table, DefaultRetention, Table)
	}
}
