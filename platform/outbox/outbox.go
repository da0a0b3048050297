// Package outbox is Ficus's transactional outbox: events are recorded in the same database
// transaction as the state change they describe, and a relay publishes them afterwards.
package outbox

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
)

// Table is the outbox table's name.
const Table = "ficus_outbox"

// record is one outbox row.
type record struct {
	Seq       int64  `gorm:"primaryKey;autoIncrement"`
	EventID   string `gorm:"uniqueIndex"`
	Type      string
	Subject   string
	Payload   []byte
	CreatedAt time.Time
	SentAt    *time.Time
}

func (record) TableName() string { return Table }

// Add records evs in tx, the transaction that makes the state change they describe. It never
// opens a transaction of its own: an event outside its change's transaction is a dual write.
func Add(ctx context.Context, tx *gorm.DB, evs ...event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	rows := make([]record, len(evs))
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
		rows[i] = record{EventID: e.ID, Type: e.Type, Subject: e.Subject, Payload: payload, CreatedAt: created.UTC()}
	}
	if err := tx.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("recording events in outbox: %w", err)
	}
	return nil
}
