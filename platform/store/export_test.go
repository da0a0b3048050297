package store

import "gorm.io/gorm"

// WritersWaiting reports how many writers are queued for db's write lock.
func WritersWaiting(db *gorm.DB) int32 {
	return db.Config.Plugins[writeLockName].(*writeLock).waiting.Load()
}
