package outbox

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the outbox table in db.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "outbox", migrations, "migrations")
}

func marshal(e event.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	return b, nil
}
