package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs the suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestAddRejectsEventsWithoutIDOrType, TestListPagesInOrder, TestRelayPublishesInOrderAndMarksSent,
		TestRelayRetriesWithBackoff, TestRelayDoesNotSkipLateCommits, TestNotifyWakesTheRelay,
		TestOnlyTheLeaseHolderPublishes, TestRelayMetrics, TestPruneRuleDeletesOnlyOldSentRows,
		testSubjectsAreNumberedInCommitOrder,
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
	return db
}

func newEvents(t *testing.T, n int) []event.Event {
	t.Helper()
	evs := make([]event.Event, n)
	for i := range evs {
		e, err := event.New("/test", "test.thing.v1", fmt.Sprint("s", i%3), map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = e
	}
	return evs
}

func add(t *testing.T, db *gorm.DB, evs ...event.Event) {
	t.Helper()
	ctx := context.Background()
	if err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error { return Add(ctx, tx, evs...) }); err != nil {
		t.Fatal(err)
	}
}

// fakePublisher records what it publishes; fail, if set, decides whether a call fails.
type fakePublisher struct {
	mu    sync.Mutex
	ids   []string
	calls []time.Time
	fail  func(call int) error
}

func (p *fakePublisher) Publish(_ context.Context, evs ...event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, time.Now())
	if p.fail != nil {
		if err := p.fail(len(p.calls)); err != nil {
			return err
		}
	}
	for _, e := range evs {
		p.ids = append(p.ids, e.ID)
	}
	return nil
}

func (p *fakePublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ids...)
}

func run(t *testing.T, r *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pending(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	n, _, err := Backlog(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAddRejectsEventsWithoutIDOrType(t *testing.T) {
	db := openDB(t)
	err := db.Transaction(func(tx *gorm.DB) error {
		return Add(context.Background(), tx, event.Event{Type: "test.thing.v1"})
	})
	if err == nil {
		t.Fatal("Add accepted an event without an id")
	}
}

func TestListPagesInOrder(t *testing.T) {
	db := openDB(t)
	evs := newEvents(t, 7)
	add(t, db, evs[:3]...)
	add(t, db, evs[3:]...)
	ctx := context.Background()
	got, err := List(ctx, db, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := List(ctx, db, 5, 5)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, rest...)
	if len(got) != len(evs) {
		t.Fatalf("listed %d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		if got[i].ID != evs[i].ID || got[i].Type != evs[i].Type || string(got[i].Data) != string(evs[i].Data) || !got[i].Time.Equal(evs[i].Time) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], evs[i])
		}
	}
}

func TestRelayPublishesInOrderAndMarksSent(t *testing.T) {
	db := openDB(t)
	evs := newEvents(t, 25)
	add(t, db, evs...)
	pub := &fakePublisher{}
	run(t, NewRelay(db, pub, RelayOptions{BatchSize: 10, PollInterval: 5 * time.Millisecond}))
	waitFor(t, "the backlog to drain", func() bool { return pending(t, db) == 0 })
	got := pub.published()
	if len(got) != len(evs) {
		t.Fatalf("published %d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		if got[i] != evs[i].ID {
			t.Fatalf("event %d published out of order", i)
		}
	}
	if n := len(pub.calls); n != 3 {
		t.Errorf("published in %d batches, want 3 (batch size 10)", n)
	}
}

// TestRelayRetriesWithBackoff: while the bus is down nothing is marked sent, retries back off
// exponentially, and everything goes out when the bus returns.
func TestRelayRetriesWithBackoff(t *testing.T) {
	db := openDB(t)
	evs := newEvents(t, 5)
	add(t, db, evs...)
	var down atomic.Bool
	down.Store(true)
	pub := &fakePublisher{fail: func(int) error {
		if down.Load() {
			return errors.New("bus down")
		}
		return nil
	}}
	run(t, NewRelay(db, pub, RelayOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}))
	waitFor(t, "five failed attempts", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return len(pub.calls) >= 5
	})
	if n := pending(t, db); n != 5 {
		t.Fatalf("backlog while the bus is down = %d, want 5", n)
	}
	pub.mu.Lock()
	calls := append([]time.Time(nil), pub.calls...)
	pub.mu.Unlock()
	for i, want := range []time.Duration{10, 20, 40, 80} {
		if gap := calls[i+1].Sub(calls[i]); gap < want*time.Millisecond*8/10 {
			t.Errorf("retry %d after %s, want at least %dms", i+1, gap, want)
		}
	}
	down.Store(false)
	waitFor(t, "the backlog to drain", func() bool { return pending(t, db) == 0 })
	if got := pub.published(); len(got) != 5 {
		t.Errorf("published %d events, want 5", len(got))
	}
}

// TestRelayDoesNotSkipLateCommits: rows are chosen by sent_at, not by a high-water mark, so a
// row with a lower seq that commits after higher ones were sent (as on PostgreSQL, where
// sequence order is not commit order) is still published.
func TestRelayDoesNotSkipLateCommits(t *testing.T) {
	db := openDB(t)
	if store.EngineName(db) == "postgres" {
		lateCommitOnPostgres(t, db)
		return
	}
	// SQLite's writers take turns, so a late commit is staged: the sequence jumps ahead,
	// and the late row is inserted below it afterwards.
	evs := newEvents(t, 3)
	add(t, db, evs[1:]...)
	if err := db.Exec(`UPDATE sqlite_sequence SET seq = seq + 10 WHERE name = ?`, Table).Error; err != nil {
		t.Fatal(err)
	}
	add(t, db, newEvents(t, 1)...)
	pub := &fakePublisher{}
	run(t, NewRelay(db, pub, RelayOptions{PollInterval: 5 * time.Millisecond}))
	waitFor(t, "the first rows", func() bool { return pending(t, db) == 0 })
	// The late transaction took seq 5, before the last row above, and commits only now.
	late, err := marshal(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	err = db.Exec(`INSERT INTO `+Table+` (seq, event_id, type, subject, payload, created_at) VALUES (5, ?, ?, ?, ?, ?)`,
		evs[0].ID, evs[0].Type, evs[0].Subject, late, evs[0].Time).Error
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late row to be published", func() bool {
		for _, id := range pub.published() {
			if id == evs[0].ID {
				return true
			}
		}
		return false
	})
}

func TestNotifyWakesTheRelay(t *testing.T) {
	db := openDB(t)
	pub := &fakePublisher{}
	r := NewRelay(db, pub, RelayOptions{PollInterval: time.Hour})
	add(t, db, newEvents(t, 1)...)
	run(t, r)
	// The relay's first round publishes the first event; after it the relay is idle until
	// its next poll, an hour away.
	waitFor(t, "the first round to publish", func() bool { return len(pub.published()) == 1 })
	add(t, db, newEvents(t, 1)...)
	start := time.Now()
	r.Notify()
	waitFor(t, "the notified relay to publish", func() bool { return len(pub.published()) == 2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("published %s after Notify", d)
	}
}

// TestOnlyTheLeaseHolderPublishes: two relays on one outbox never both publish; when the
// holder stops, the other takes over.
func TestOnlyTheLeaseHolderPublishes(t *testing.T) {
	db := openDB(t)
	p1, p2 := &fakePublisher{}, &fakePublisher{}
	opts := RelayOptions{PollInterval: 5 * time.Millisecond, LeaseTTL: 1500 * time.Millisecond}
	opts.Holder = "one"
	stop1 := run(t, NewRelay(db, p1, opts))
	waitFor(t, "relay one to take the lease", func() bool {
		var holder []string
		db.Raw(`SELECT holder FROM ` + LeaseTable).Scan(&holder)
		return len(holder) == 1 && holder[0] == "one"
	})
	opts.Holder = "two"
	looked := make(chan struct{}, 100)
	opts.Logger = slog.New(messageSignal{msg: "outbox relay: lease held by another relay", ch: looked})
	run(t, NewRelay(db, p2, opts))
	for range 3 {
		for len(looked) > 0 {
			<-looked
		}
		add(t, db, newEvents(t, 10)...)
		// Relay two looks at the lease twice with rows waiting (the second look began after
		// they were added) and finds it taken.
		for i := range 2 {
			select {
			case <-looked:
			case <-time.After(10 * time.Second):
				t.Fatalf("relay two looked at the lease %d times in 10s, want 2", i)
			}
		}
	}
	waitFor(t, "the backlog to drain", func() bool { return pending(t, db) == 0 })
	if n := len(p2.published()); n != 0 {
		t.Fatalf("relay two published %d events while relay one held the lease", n)
	}
	stop1()
	add(t, db, newEvents(t, 10)...)
	waitFor(t, "relay two to take over", func() bool { return len(p2.published()) == 10 })
	if n := len(p1.published()); n != 30 {
		t.Errorf("relay one published %d events, want 30", n)
	}
}

// messageSignal is a log handler that signals on ch every record whose message is msg.
type messageSignal struct {
	msg string
	ch  chan struct{}
}

func (h messageSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h messageSignal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h messageSignal) WithGroup(string) slog.Handler            { return h }
func (h messageSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func TestRelayMetrics(t *testing.T) {
	db := openDB(t)
	var clock atomic.Int64
	base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock.Store(base.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	var down atomic.Bool
	down.Store(true)
	pub := &fakePublisher{fail: func(int) error {
		if down.Load() {
			return errors.New("bus down")
		}
		return nil
	}}
	evs := newEvents(t, 4)
	for i := range evs {
		evs[i].Time = base.Add(-90 * time.Second)
	}
	add(t, db, evs...)
	reg := prometheus.NewRegistry()
	run(t, NewRelay(db, pub, RelayOptions{
		Name: "shop", Registerer: reg, Now: now,
		PollInterval: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}))
	// The gauges may be read before the first failed round is counted: wait for both.
	waitFor(t, "the backlog gauges and a counted relay error", func() bool {
		return gauge(t, reg, "ficus_outbox_backlog") == 4 && gauge(t, reg, "ficus_outbox_oldest_age_seconds") == 90 &&
			gauge(t, reg, "ficus_outbox_relay_errors_total") >= 1
	})
	down.Store(false)
	waitFor(t, "the backlog to drain", func() bool { return pending(t, db) == 0 })
	clock.Add(int64(time.Second)) // The gauges refresh at most twice a second.
	waitFor(t, "the gauges to drop", func() bool {
		return gauge(t, reg, "ficus_outbox_backlog") == 0 && gauge(t, reg, "ficus_outbox_relayed_total") == 4
	})
	if v := gauge(t, reg, "ficus_outbox_lease_held"); v != 1 {
		t.Errorf("lease held = %v, want 1", v)
	}
}

// gauge returns the value of the single sample of the named metric in reg, or -1.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// addAndHold records e in a unit of work it keeps open until commit is called; commit returns
// that unit of work's result. The unit of work is ended in t.Cleanup if the test does not.
func addAndHold(t *testing.T, db *gorm.DB, e event.Event) (commit func() error) {
	t.Helper()
	recorded, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- store.Write(context.Background(), db, func(ctx context.Context, tx *gorm.DB) error {
			if err := Add(ctx, tx, e); err != nil {
				return err
			}
			close(recorded)
			<-release
			return nil
		})
	}()
	select {
	case <-recorded:
	case err := <-done:
		t.Fatalf("recording %s: %v", e.ID, err)
	}
	var once sync.Once
	commit = func() error {
		once.Do(func() { close(release) })
		return <-done
	}
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	return commit
}

// lateCommitOnPostgres: a transaction that took its seq first and commits last is published
// after the rows that overtook it, not skipped.
func lateCommitOnPostgres(t *testing.T, db *gorm.DB) {
	evs := newEvents(t, 2)
	late, early := evs[0], evs[1]
	late.Subject, early.Subject = "late", "early"
	commitLate := addAndHold(t, db, late)
	add(t, db, early) // Takes the next seq and commits while the late one is still open.
	pub := &fakePublisher{}
	run(t, NewRelay(db, pub, RelayOptions{PollInterval: 5 * time.Millisecond}))
	waitFor(t, "the early row", func() bool { return len(pub.published()) == 1 })
	if err := commitLate(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late row", func() bool { return len(pub.published()) == 2 })
	if got := pub.published(); got[0] != early.ID || got[1] != late.ID {
		t.Errorf("published %v, want the early event, then the late one", got)
	}
	var seqs []int64
	db.Raw(`SELECT seq FROM `+Table+` ORDER BY event_id = ?`, early.ID).Scan(&seqs)
	if len(seqs) != 2 || seqs[0] > seqs[1] {
		t.Errorf("seqs %v: the late event should hold the lower number", seqs)
	}
}

// testSubjectsAreNumberedInCommitOrder (PostgreSQL): while a transaction that recorded an
// event for a subject is open, another transaction recording an event for the same subject
// waits for it, so the subject's events are numbered, and published, in commit order.
// Without the subject lock the second would take a higher number and commit first.
func testSubjectsAreNumberedInCommitOrder(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	evs := newEvents(t, 2)
	first, second := evs[0], evs[1]
	first.Subject, second.Subject = "sku-1", "sku-1"
	commitFirst := addAndHold(t, db, first)
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error { return Add(ctx, tx, second) })
	}()
	waitFor(t, "the second transaction to wait for the subject", func() bool {
		select {
		case err := <-secondDone:
			t.Fatalf("the second transaction recorded an event for the subject while the first was open (err %v)", err)
		default:
		}
		var waiting int64
		db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting)
		return waiting == 1
	})
	if err := commitFirst(); err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	run(t, NewRelay(db, pub, RelayOptions{PollInterval: 5 * time.Millisecond}))
	waitFor(t, "both events", func() bool { return len(pub.published()) == 2 })
	if got := pub.published(); got[0] != first.ID || got[1] != second.ID {
		t.Errorf("published %v, want the first committed, then the second", got)
	}
}
