package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// schemaMigration records one applied migration.
type schemaMigration struct {
	Component string `gorm:"primaryKey"`
	Version   int    `gorm:"primaryKey;autoIncrement:false"`
	Name      string
	AppliedAt time.Time
}

func (schemaMigration) TableName() string { return PlatformPrefix + "schema_migrations" }

// Migrate applies, in version order, the migrations in directory dir of fsys (usually an
// embed.FS) that component has not applied to db yet, each in its own transaction together
// with its record. Files are named NNNN_description.sql; statements are separated by a
// semicolon at the end of a line.
func Migrate(ctx context.Context, db *gorm.DB, component string, fsys fs.FS, dir string) error {
	fsys, err := fs.Sub(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", component, err)
	}
	db = db.WithContext(ctx)
	if err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + PlatformPrefix + `schema_migrations (
		component TEXT NOT NULL,
		version INTEGER NOT NULL,
		name TEXT NOT NULL,
		applied_at TIMESTAMP NOT NULL,
		PRIMARY KEY (component, version))`).Error; err != nil {
		return fmt.Errorf("migrating %s: creating migrations table: %w", component, err)
	}
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return fmt.Errorf("migrating %s: %w", component, err)
	}
	type migration struct {
		version int
		name    string
	}
	var ms []migration
	seen := map[int]string{}
	for _, f := range files {
		num, _, ok := strings.Cut(path.Base(f), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migrating %s: %s: want NNNN_description.sql", component, f)
		}
		if prev, dup := seen[v]; dup {
			return fmt.Errorf("migrating %s: %s and %s share version %d", component, prev, f, v)
		}
		seen[v] = f
		ms = append(ms, migration{v, f})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })

	var applied []schemaMigration
	if err := db.Where("component = ?", component).Find(&applied).Error; err != nil {
		return fmt.Errorf("migrating %s: reading applied migrations: %w", component, err)
	}
	done := map[int]bool{}
	for _, a := range applied {
		done[a.Version] = true
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		body, err := fs.ReadFile(fsys, m.name)
		if err != nil {
			return fmt.Errorf("migrating %s: %w", component, err)
		}
		err = db.Transaction(func(tx *gorm.DB) error {
			for _, stmt := range splitStatements(string(body)) {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			return tx.Create(&schemaMigration{Component: component, Version: m.version, Name: m.name, AppliedAt: time.Now().UTC()}).Error
		})
		if err != nil {
			return fmt.Errorf("migrating %s: %w", component, err)
		}
	}
	return nil
}

// splitStatements splits a migration file on semicolons that end a line, dropping comment
// lines.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
