package inbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/retention"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs the suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestHandleAppliesOncePerConsumer, TestFailedEffectLeavesNoRecord, TestHandlerAdapterAndPrune, TestHandleBatch,
		TestPruneRuleForgetsOldIDs,
	)
}

func openDB(t *testing.T) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storetest.DSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`CREATE TABLE effects (event_id TEXT NOT NULL)`).Error; err != nil {
		t.Fatal(err)
	}
	return db
}

func effects(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM effects`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func newEvent(t *testing.T) event.Event {
	t.Helper()
	e, err := event.New("/test", "test.thing.v1", "s", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func effect(e event.Event) func(context.Context, *gorm.DB) error {
	return func(_ context.Context, tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO effects (event_id) VALUES (?)`, e.ID).Error
	}
}

func TestHandleAppliesOncePerConsumer(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	e := newEvent(t)
	for range 3 {
		if err := Handle(ctx, db, "a", e, effect(e)); err != nil {
			t.Fatal(err)
		}
	}
	if n := effects(t, db); n != 1 {
		t.Fatalf("applied %d times by one consumer, want 1", n)
	}
	if err := Handle(ctx, db, "b", e, effect(e)); err != nil {
		t.Fatal(err)
	}
	if n := effects(t, db); n != 2 {
		t.Fatalf("applied %d times by two consumers, want 2", n)
	}
	if seen, err := Seen(ctx, db, "a", e.ID); err != nil || !seen {
		t.Errorf("Seen(a) = %v, %v; want true", seen, err)
	}
	if seen, err := Seen(ctx, db, "c", e.ID); err != nil || seen {
		t.Errorf("Seen(c) = %v, %v; want false", seen, err)
	}
}

// TestFailedEffectLeavesNoRecord: the record and the effect commit together, so a failed
// handler can be retried and apply then.
func TestFailedEffectLeavesNoRecord(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	e := newEvent(t)
	boom := errors.New("boom")
	err := Handle(ctx, db, "a", e, func(ctx context.Context, tx *gorm.DB) error {
		if err := effect(e)(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Handle = %v, want boom", err)
	}
	if n := effects(t, db); n != 0 {
		t.Fatalf("failed handler left %d effects", n)
	}
	if err := Handle(ctx, db, "a", e, effect(e)); err != nil {
		t.Fatal(err)
	}
	if n := effects(t, db); n != 1 {
		t.Fatalf("retry applied %d effects, want 1", n)
	}
}

func TestHandlerAdapterAndPrune(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	h := Handler(db, "a", func(ctx context.Context, tx *gorm.DB, e event.Event) error { return effect(e)(ctx, tx) })
	e := newEvent(t)
	for range 2 {
		if err := h(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if n := effects(t, db); n != 1 {
		t.Fatalf("applied %d times, want 1", n)
	}
	prune := func(now time.Time) int64 {
		t.Helper()
		res, err := retention.NewPruner(db, retention.Options{Now: func() time.Time { return now }}, PruneRule(time.Hour)).Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res.Pruned[Table]
	}
	if n := prune(time.Now()); n != 0 {
		t.Fatalf("pruning ids older than an hour deleted %d, want 0", n)
	}
	if n := prune(time.Now().Add(2 * time.Hour)); n != 1 {
		t.Fatalf("pruning two hours on deleted %d, want 1", n)
	}
	if err := Handle(ctx, db, "", e, effect(e)); err == nil {
		t.Error("Handle accepted an empty consumer name")
	}
}

func TestHandleBatch(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	a, b, c := newEvent(t), newEvent(t), newEvent(t)
	apply := func(ctx context.Context, tx *gorm.DB, e event.Event) error { return effect(e)(ctx, tx) }
	if err := Handle(ctx, db, "x", a, effect(a)); err != nil {
		t.Fatal(err)
	}
	// a was applied before, b appears twice: only b and c apply, once each.
	if err := HandleBatch(ctx, db, "x", []event.Event{a, b, b, c}, apply); err != nil {
		t.Fatal(err)
	}
	if n := effects(t, db); n != 3 {
		t.Fatalf("%d effects, want 3", n)
	}
	// A failing event rolls the whole batch back, records included.
	d, e := newEvent(t), newEvent(t)
	err := HandleBatch(ctx, db, "x", []event.Event{d, e}, func(ctx context.Context, tx *gorm.DB, ev event.Event) error {
		if ev.ID == e.ID {
			return errors.New("boom")
		}
		return apply(ctx, tx, ev)
	})
	if err == nil {
		t.Fatal("HandleBatch succeeded with a failing event")
	}
	if seen, _ := Seen(ctx, db, "x", d.ID); seen {
		t.Error("the failed batch left d recorded")
	}
	if n := effects(t, db); n != 3 {
		t.Fatalf("%d effects after the failed batch, want 3", n)
	}
	if err := BatchHandler(db, "x", apply)(ctx, []event.Event{d, e}); err != nil {
		t.Fatal(err)
	}
	if n := effects(t, db); n != 5 {
		t.Fatalf("%d effects, want 5", n)
	}
}
