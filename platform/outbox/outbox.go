// Package outbox is Ficus's transactional outbox: events are recorded in the same database
// transaction as the state change they describe (Add), and a Relay publishes them afterwards,
// in order, at least once, marking each row sent once the bus has stored it. See Relay for the
// guarantees and docs/events.md for the whole event pipeline.
package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/store"
)

// Table is the outbox table's name.
const Table = "ficus_outbox"

// Add records evs in tx, the transaction that makes the state change they describe. It never
// opens a transaction of its own: an event outside its change's transaction is a dual write.
//
// It first locks the events' subjects for the rest of the transaction (store.LockKeys), so
// that the events of one subject are numbered in the order their transactions commit, even on
// PostgreSQL, where transactions take sequence numbers side by side: the relay then publishes
// each subject's events in commit order. See docs/events.md.
func Add(ctx context.Context, tx *gorm.DB, evs ...event.Event) error {
	if err := lockSubjects(tx, evs); err != nil {
		return fmt.Errorf("recording events in outbox: %w", err)
	}
	for len(evs) > 0 {
		n := min(len(evs), 1000) // Stay under SQLite's limit of bound parameters.
		if err := insert(ctx, tx, evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// lockSubjects locks the subjects of evs (LockKeys takes each key once).
func lockSubjects(tx *gorm.DB, evs []event.Event) error {
	keys := make([]string, len(evs))
	for i, e := range evs {
		keys[i] = Table + ":" + e.Subject
	}
	return store.LockKeys(tx, keys...)
}

func insert(ctx context.Context, tx *gorm.DB, evs []event.Event) error {
	// One multi-row INSERT through Exec: gorm's Create would add a RETURNING query per call,
	// and this runs inside every state-changing transaction.
	var sql strings.Builder
	sql.WriteString(`INSERT INTO ` + Table + ` (event_id, type, subject, payload, created_at) VALUES `)
	args := make([]any, 0, 5*len(evs))
	for i, e := range evs {
		if e.ID == "" || e.Type == "" {
			return fmt.Errorf("recording events in outbox: event without id or type (%q, %q)", e.ID, e.Type)
		}
		payload, err := marshal(e)
		if err != nil {
			return err
		}
		created := e.Time
		if created.IsZero() {
			created = time.Now()
		}
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, e.ID, e.Type, e.Subject, payload, created.UTC())
	}
	if err := tx.WithContext(ctx).Exec(sql.String(), args...).Error; err != nil {
		return fmt.Errorf("recording events in outbox: %w", err)
	}
	return nil
}

// Record builds one event (see event.New) and adds it to the outbox in tx.
func Record(ctx context.Context, tx *gorm.DB, source, typ, subject string, data any) error {
	e, err := event.New(source, typ, subject, data)
	if err != nil {
		return err
	}
	return Add(ctx, tx, e)
}
