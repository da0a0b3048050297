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
)

// Table is the outbox table's name.
const Table = "ficus_outbox"

// Add records evs in tx, the transaction that makes the state change they describe. It never
// opens a transaction of its own: an event outside its change's transaction is a dual write.
//
// The events of one subject are numbered in the order their transactions commit, so the relay
// publishes them in that order: on SQLite because writers take turns, on PostgreSQL because
// the outbox's insert trigger makes a transaction wait for the others recording events of the
// same subject before it numbers its own (see the migrations and docs/events.md).
func Add(ctx context.Context, tx *gorm.DB, evs ...event.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), 1000) // Stay under SQLite's limit of bound parameters.
		if err := insert(ctx, tx, evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
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
