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

// migrationLock is the key (see lockKeys) that migrating processes take, so that two of them
// starting at once on one PostgreSQL database apply each migration once.
const migrationLock = PlatformPrefix + "schema_migrations"

// Migrate applies, in version order, the migrations in directory dir of fsys (usually an
// embed.FS) that component has not applied to db yet, each in its own transaction together
// with its record.
//
// Files are named NNNN_description.sql, for every engine, or NNNN_description.ENGINE.sql
// (ENGINE is sqlite or postgres) where the engines need different SQL: a version then has
// one file per engine. Statements are separated by a semicolon at the end of a line, except
// inside a $$-quoted body; lines starting with -- are comments. Which file of a version ran is recorded, but only the
// version decides whether it has run, so a version may be split into per-engine files later.
func Migrate(ctx context.Context, db *gorm.DB, component string, fsys fs.FS, dir string) error {
	st, err := stateOf(db)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", component, err)
	}
	ms, err := migrationFiles(fsys, dir, st.engine.Name())
	if err != nil {
		return fmt.Errorf("migrating %s: %w", component, err)
	}
	err = st.engine.Write(ctx, st.root, func(ctx context.Context, tx *gorm.DB) error {
		if err := lockKeys(tx, migrationLock); err != nil {
			return err
		}
		return tx.WithContext(ctx).Exec(`CREATE TABLE IF NOT EXISTS ` + PlatformPrefix + `schema_migrations (
			component TEXT NOT NULL,
			version INTEGER NOT NULL,
			name TEXT NOT NULL,
			applied_at TIMESTAMP NOT NULL,
			PRIMARY KEY (component, version))`).Error
	})
	if err != nil {
		return fmt.Errorf("migrating %s: creating migrations table: %w", component, err)
	}
	for _, m := range ms {
		err := st.engine.Write(ctx, st.root, func(ctx context.Context, tx *gorm.DB) error {
			tx = tx.WithContext(ctx)
			// Under the lock, look again: another process may have applied it meanwhile.
			if err := lockKeys(tx, migrationLock); err != nil {
				return err
			}
			var n int64
			if err := tx.Model(&schemaMigration{}).Where("component = ? AND version = ?", component, m.version).Count(&n).Error; err != nil {
				return fmt.Errorf("reading applied migrations: %w", err)
			}
			if n > 0 {
				return nil
			}
			body, err := fs.ReadFile(fsys, m.name)
			if err != nil {
				return err
			}
			for _, stmt := range splitStatements(string(body)) {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			return tx.Create(&schemaMigration{Component: component, Version: m.version, Name: path.Base(m.name), AppliedAt: time.Now().UTC()}).Error
		})
		if err != nil {
			return fmt.Errorf("migrating %s: %w", component, err)
		}
	}
	return nil
}

// migration is the file that brings a component to a version on one engine.
type migration struct {
	version int
	name    string // path in the file system
}

// migrationFiles returns the migrations of directory dir for engine, in version order.
func migrationFiles(fsys fs.FS, dir, engine string) ([]migration, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	type versionFiles struct {
		portable string
		byEngine map[string]string
	}
	versions := map[int]*versionFiles{}
	for _, f := range files {
		base := strings.TrimSuffix(path.Base(f), ".sql")
		num, desc, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || desc == "" {
			return nil, fmt.Errorf("%s: want NNNN_description.sql or NNNN_description.ENGINE.sql", f)
		}
		vf := versions[v]
		if vf == nil {
			vf = &versionFiles{byEngine: map[string]string{}}
			versions[v] = vf
		}
		eng := ""
		if i := strings.LastIndexByte(desc, '.'); i >= 0 {
			eng = desc[i+1:]
			if eng != "sqlite" && eng != "postgres" {
				return nil, fmt.Errorf("%s: unknown engine %q (want sqlite or postgres)", f, eng)
			}
		}
		switch {
		case eng == "" && vf.portable != "":
			return nil, fmt.Errorf("%s and %s share version %d", vf.portable, f, v)
		case eng == "":
			vf.portable = f
		case vf.byEngine[eng] != "":
			return nil, fmt.Errorf("%s and %s share version %d on %s", vf.byEngine[eng], f, v, eng)
		default:
			vf.byEngine[eng] = f
		}
	}
	var out []migration
	for v, vf := range versions {
		switch {
		case vf.portable != "" && len(vf.byEngine) > 0:
			return nil, fmt.Errorf("version %d has a file for every engine (%s) and per-engine files: keep one or the other", v, vf.portable)
		case vf.portable != "":
			out = append(out, migration{v, vf.portable})
		case vf.byEngine[engine] != "":
			out = append(out, migration{v, vf.byEngine[engine]})
		default:
			return nil, fmt.Errorf("version %d has no file for %s", v, engine)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// splitStatements splits a migration file on semicolons that end a line, dropping comment
// lines. Inside a dollar-quoted body ($$ … $$, as of a PostgreSQL function) lines are kept
// whole and semicolons do not split.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if !quoted && (strings.HasPrefix(trimmed, "--") || trimmed == "") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.Count(line, "$$")%2 == 1 {
			quoted = !quoted
		}
		if !quoted && strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
