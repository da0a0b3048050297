package idempotency

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/retention"
)

// DefaultRetention is how long a stored response is replayed when PruneRule is given no time.
const DefaultRetention = 24 * time.Hour

// PruneRule is the retention rule of the key table (config.yaml's retention.idempotency): a
// finished request's key and stored response are deleted keep after its first request
// (DefaultRetention if keep is not positive), and a repeat with that key then runs again, as
// a new request. Claims still in flight are never deleted.
func PruneRule(keep time.Duration) retention.Rule {
	if keep <= 0 {
		keep = DefaultRetention
	}
	return retention.Rule{Table: keyTable, Keep: keep, Prune: pruneDone}
}

// pruneDone deletes up to limit finished keys first claimed before cutoff, oldest first.
func pruneDone(tx *gorm.DB, cutoff time.Time, limit int) (int64, error) {
	res := tx.Exec(`DELETE FROM `+keyTable+` WHERE (scope, key) IN (
		SELECT scope, key FROM `+keyTable+` WHERE state = ? AND created_at < ? ORDER BY created_at LIMIT ?)`,
		stateDone, cutoff.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("pruning idempotency keys: %w", res.Error)
	}
	return res.RowsAffected, nil
}
