package outbox

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/retention"
)

// DefaultRetention is how long published rows are kept when PruneRule is given no time: long
// enough to look at what a producer emitted yesterday, short enough that the outbox holds a
// day of events at most. The bus keeps the events themselves for longer.
const DefaultRetention = 24 * time.Hour

// PruneRule is the retention rule of an outbox (config.yaml's retention.outbox): a row is
// deleted keep after the relay marked it sent (DefaultRetention if keep is not positive).
// Rows not sent yet are never deleted.
func PruneRule(keep time.Duration) retention.Rule {
	if keep <= 0 {
		keep = DefaultRetention
	}
	return retention.Rule{Table: Table, Keep: keep, Prune: pruneSent}
}

// pruneSent deletes, among the limit oldest rows, those sent before cutoff. Looking only at
// the oldest rows keeps each call cheap without an index on sent_at: the relay sends rows in
// seq order, so the rows old enough to go are the first ones, and a round that meets a row
// not old enough (or not sent) has reached the rows that must stay.
func pruneSent(tx *gorm.DB, cutoff time.Time, limit int) (int64, error) {
	res := tx.Exec(`DELETE FROM `+Table+` WHERE seq IN (
		SELECT seq FROM (SELECT seq, sent_at FROM `+Table+` ORDER BY seq LIMIT ?) oldest
		WHERE sent_at IS NOT NULL AND sent_at < ?)`, limit, cutoff.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("pruning outbox: %w", res.Error)
	}
	return res.RowsAffected, nil
}
