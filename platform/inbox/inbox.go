// Package inbox makes event handling exactly-once in effect. The bus delivers at least once;
// the inbox records, per consumer, the id of every event applied, in the same transaction as
// the handler's effect, so a redelivered event finds its id there and changes nothing. Ids are
// kept until PruneRule's retention has passed, which must outlast every possible redelivery.
package inbox

import (
	"context"
	"embed"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/store"
)

// Table is the inbox table's name.
const Table = "ficus_inbox"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the inbox table in db, the consumer's own database.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "inbox", migrations, "migrations")
}

// Handle applies e for consumer exactly once: in one transaction on db, it records e's id in
// the inbox and runs fn, so either both happen or neither does. If consumer has applied e
// before, Handle does nothing and returns nil. If ctx already carries a unit of work on db
// (store.Write), Handle joins it.
func Handle(ctx context.Context, db *gorm.DB, consumer string, e event.Event, fn func(ctx context.Context, tx *gorm.DB) error) error {
	if consumer == "" || e.ID == "" {
		return fmt.Errorf("handling event: empty consumer (%q) or event id (%q)", consumer, e.ID)
	}
	err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO `+Table+` (consumer, event_id, event_type, processed_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (consumer, event_id) DO NOTHING`, consumer, e.ID, e.Type, now(tx))
		if res.Error != nil {
			return fmt.Errorf("recording in inbox: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil // Seen before: the effect is already committed.
		}
		return fn(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("handling event %s (%s) for %s: %w", e.ID, e.Type, consumer, err)
	}
	return nil
}

// HandleBatch applies evs for consumer in one transaction on db: each event not applied
// before is recorded and passed to fn; events seen before are skipped. Either every new event's
// effect commits, with its record, or none does. It is the transaction-saving counterpart of
// Handle for bus.ConsumeBatch.
func HandleBatch(ctx context.Context, db *gorm.DB, consumer string, evs []event.Event, fn func(ctx context.Context, tx *gorm.DB, e event.Event) error) error {
	if consumer == "" {
		return fmt.Errorf("handling events: empty consumer name")
	}
	for _, e := range evs {
		if e.ID == "" {
			return fmt.Errorf("handling events for %s: event of type %s without id", consumer, e.Type)
		}
	}
	err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		fresh, err := record(tx, consumer, evs)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if _, ok := fresh[e.ID]; !ok {
				continue // Seen before, or twice in this batch.
			}
			delete(fresh, e.ID)
			if err := fn(ctx, tx, e); err != nil {
				return fmt.Errorf("event %s (%s): %w", e.ID, e.Type, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("handling %d events for %s: %w", len(evs), consumer, err)
	}
	return nil
}

// record inserts evs into the inbox, a few hundred rows per statement, and returns the ids that
// were not there before.
func record(tx *gorm.DB, consumer string, evs []event.Event) (map[string]struct{}, error) {
	fresh := make(map[string]struct{}, len(evs))
	at := now(tx)
	for len(evs) > 0 {
		n := min(len(evs), 500)
		var sql strings.Builder
		sql.WriteString(`INSERT INTO ` + Table + ` (consumer, event_id, event_type, processed_at) VALUES `)
		args := make([]any, 0, 4*n)
		for i, e := range evs[:n] {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?, ?)")
			args = append(args, consumer, e.ID, e.Type, at)
		}
		sql.WriteString(` ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id`)
		var ids []string
		if err := tx.Raw(sql.String(), args...).Scan(&ids).Error; err != nil {
			return nil, fmt.Errorf("recording in inbox: %w", err)
		}
		for _, id := range ids {
			fresh[id] = struct{}{}
		}
		evs = evs[n:]
	}
	return fresh, nil
}

// BatchHandler adapts fn into a bus batch handler (bus.BatchHandler's signature) that applies
// events through HandleBatch on db for consumer.
func BatchHandler(db *gorm.DB, consumer string, fn func(ctx context.Context, tx *gorm.DB, e event.Event) error) func(context.Context, []event.Event) error {
	return func(ctx context.Context, evs []event.Event) error {
		return HandleBatch(ctx, db, consumer, evs, fn)
	}
}

// Handler adapts fn into a bus handler (bus.Handler's signature) that applies every event
// through Handle on db for consumer.
func Handler(db *gorm.DB, consumer string, fn func(ctx context.Context, tx *gorm.DB, e event.Event) error) func(context.Context, event.Event) error {
	return func(ctx context.Context, e event.Event) error {
		return Handle(ctx, db, consumer, e, func(ctx context.Context, tx *gorm.DB) error {
			return fn(ctx, tx, e)
		})
	}
}

// Seen reports whether consumer has applied the event id.
func Seen(ctx context.Context, db *gorm.DB, consumer, id string) (bool, error) {
	var n int64
	err := db.WithContext(ctx).Table(Table).Where("consumer = ? AND event_id = ?", consumer, id).Count(&n).Error
	if err != nil {
		return false, fmt.Errorf("reading inbox: %w", err)
	}
	return n > 0, nil
}
