package store

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
)

const moduleSetting = "ficus:module"

// installGuard registers callbacks that refuse a module handle's statements on other modules'
// tables. It checks the statement's table and, for raw SQL and joins, every identifier that
// names a guarded module's table.
func installGuard(db *gorm.DB, modules []string) error {
	if len(modules) == 0 {
		return nil
	}
	g := guard{modules: modules}
	cb := db.Callback()
	steps := []struct {
		name     string
		register func(string, func(*gorm.DB)) error
	}{
		{"create", cb.Create().Before("gorm:create").Register},
		{"query", cb.Query().Before("gorm:query").Register},
		{"update", cb.Update().Before("gorm:update").Register},
		{"delete", cb.Delete().Before("gorm:delete").Register},
		{"row", cb.Row().Before("gorm:row").Register},
		{"raw", cb.Raw().Before("gorm:raw").Register},
	}
	for _, s := range steps {
		if err := s.register("ficus:guard_"+s.name, g.check); err != nil {
			return fmt.Errorf("installing module guard: %w", err)
		}
	}
	return nil
}

type guard struct{ modules []string }

func (g guard) check(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	v, ok := db.Statement.Settings.Load(moduleSetting)
	if !ok {
		return
	}
	module, _ := v.(string)
	names := []string{db.Statement.Table}
	if sql := db.Statement.SQL.String(); sql != "" {
		names = append(names, identifiers(sql)...)
	}
	for _, j := range db.Statement.Joins {
		names = append(names, identifiers(j.Name)...)
	}
	for _, n := range names {
		if owner := g.owner(n); owner != "" && owner != module {
			_ = db.AddError(fmt.Errorf("%w: module %s touched table %s of module %s", ErrBoundary, module, n, owner))
			return
		}
	}
}

// owner returns the guarded module a table name belongs to, or "".
func (g guard) owner(table string) string {
	table = strings.ToLower(strings.Trim(table, "`\"[]"))
	for _, m := range g.modules {
		if strings.HasPrefix(table, m+"_") {
			return m
		}
	}
	return ""
}

// identifiers splits SQL text into the words that could name a table.
func identifiers(sql string) []string {
	return strings.FieldsFunc(strings.ToLower(sql), func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}
