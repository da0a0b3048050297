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
// a new request. A claim still in flight is kept until keep after its lease ran out: only a
// claim its process abandoned (it crashed between claiming and answering, in Claimed mode)
// is that old, and a repeat would have taken it over and run again all the same.
func PruneRule(keep time.Duration) retention.Rule {
	if keep <= 0 {
		keep = DefaultRetention
	}
	return retention.Rule{Table: keyTable, Keep: keep, Prune: pruneDone}
}

// pruneDone deletes up to limit finished keys first claimed before cutoff, and abandoned
// claims whose lease ran out before it, oldest first. A claim's lease ends after its
// creation, so created_at < cutoff still finds both through the index.
func pruneDone(tx *gorm.DB, cutoff time.Time, limit int) (int64, error) {
	res := tx.Exec(`DELETE FROM `+keyTable+` WHERE (scope, key) IN (
		SELECT scope, key FROM `+keyTable+` WHERE created_at < ? AND (state = ? OR locked_until < ?)
		ORDER BY created_at LIMIT ?)`,
		cutoff.UTC(), stateDone, cutoff.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("pruning idempotency keys: %w", res.Error)
	}
	return res.RowsAffected, nil
}
