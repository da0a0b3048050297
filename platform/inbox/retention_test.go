package inbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/retention"
)

// TestPruneRuleForgetsOldIDs: ids are stamped with the database handle's clock, by Handle and
// HandleBatch alike, and forgotten once older than the retention; within it a redelivery is
// still dropped. (After it, a redelivery applies again: hence the bound in docs/events.md.)
func TestPruneRuleForgetsOldIDs(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	var clock atomic.Int64
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	db.Config.NowFunc = func() time.Time { return time.Unix(0, clock.Load()) }
	apply := func(ctx context.Context, tx *gorm.DB, e event.Event) error { return effect(e)(ctx, tx) }

	old, fresh1, fresh2 := newEvent(t), newEvent(t), newEvent(t)
	if err := Handle(ctx, db, "a", old, effect(old)); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Hour))
	if err := HandleBatch(ctx, db, "a", []event.Event{fresh1, fresh2}, apply); err != nil {
		t.Fatal(err)
	}
	prune := func(at time.Duration) int64 {
		t.Helper()
		p := retention.NewPruner(db, retention.Options{BatchSize: 1, Now: func() time.Time { return t0.Add(at) }}, PruneRule(90*time.Minute))
		res, err := p.Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res.Pruned[Table]
	}
	if n := prune(time.Hour); n != 0 {
		t.Fatalf("pruned %d ids an hour in, want 0", n)
	}
	if n := prune(2 * time.Hour); n != 1 {
		t.Fatalf("pruned %d ids two hours in, want 1 (the first event's)", n)
	}
	for _, e := range []event.Event{fresh1, fresh2} {
		if err := Handle(ctx, db, "a", e, effect(e)); err != nil {
			t.Fatal(err)
		}
	}
	if n := effects(t, db); n != 3 {
		t.Fatalf("%d effects after redelivering the remembered events, want 3", n)
	}
	if seen, err := Seen(ctx, db, "a", old.ID); err != nil || seen {
		t.Errorf("Seen(the pruned event) = %v, %v; want false", seen, err)
	}
	if n := prune(4 * time.Hour); n != 2 {
		t.Fatalf("pruned %d ids four hours in, want 2", n)
	}
}
