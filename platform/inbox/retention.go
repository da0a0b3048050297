package inbox

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/retention"
)

// DefaultRetention is how long PruneRule keeps an applied event's id when given no time: a
// day longer than the events stream keeps events by default (7 days), the longest an event
// can be delivered again.
const DefaultRetention = 8 * 24 * time.Hour

// PruneRule is the retention rule of an inbox (config.yaml's retention.inbox): a consumer
// forgets an event's id keep after it applied it (DefaultRetention if keep is not positive).
// Keep ids at least as long as the bus keeps events (events.stream.max_age): a message still
// in the stream can be delivered again, and an id forgotten before that is applied twice.
func PruneRule(keep time.Duration) retention.Rule {
	if keep <= 0 {
		keep = DefaultRetention
	}
	return retention.Rule{Table: Table, Keep: keep, Prune: pruneApplied}
}

// pruneApplied deletes up to limit ids applied before cutoff, oldest first.
func pruneApplied(tx *gorm.DB, cutoff time.Time, limit int) (int64, error) {
	res := tx.Exec(`DELETE FROM `+Table+` WHERE (consumer, event_id) IN (
		SELECT consumer, event_id FROM `+Table+` WHERE processed_at < ? ORDER BY processed_at LIMIT ?)`,
		cutoff.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("pruning inbox: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// now is the time an inbox row records: the clock of the database handle (gorm's NowFunc,
// the wall clock unless a test sets it), in UTC so stored times compare in order.
func now(tx *gorm.DB) time.Time { return tx.NowFunc().UTC() }
