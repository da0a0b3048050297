package store

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
)

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
	v, ok := db.Get(moduleSetting)
	if !ok {
		return
	}
	module, _ := v.(string)
	// It runs before every statement, so it does not allocate unless it refuses one.
	if owner := g.owner(db.Statement.Table); owner != "" && owner != module {
		g.refuse(db, module, db.Statement.Table, owner)
		return
	}
	if sql := db.Statement.SQL.String(); sql != "" {
		if name, owner := g.foreign(sql, module); owner != "" {
			g.refuse(db, module, name, owner)
			return
		}
	}
	for _, j := range db.Statement.Joins {
		if name, owner := g.foreign(j.Name, module); owner != "" {
			g.refuse(db, module, name, owner)
			return
		}
	}
}

func (g guard) refuse(db *gorm.DB, module, table, owner string) {
	_ = db.AddError(fmt.Errorf("%w: module %s touched table %s of module %s", ErrBoundary, module,
		strings.ToLower(strings.Trim(table, "`\"[]")), owner))
}

// owner returns the guarded module a table name belongs to, or "".
func (g guard) owner(table string) string {
	table = strings.Trim(table, "`\"[]")
	for _, m := range g.modules {
		if len(table) > len(m) && table[len(m)] == '_' && strings.EqualFold(table[:len(m)], m) {
			return m
		}
	}
	return ""
}

// foreign returns the first word of SQL text that names a table of a guarded module other
// than module, and that module; "" when there is none. Words are the runs of letters,
// digits and underscores, compared without regard to case.
func (g guard) foreign(sql, module string) (name, owner string) {
	for i := 0; i < len(sql); {
		if !wordByte(sql[i]) {
			i++
			continue
		}
		j := i
		for j < len(sql) && wordByte(sql[j]) {
			j++
		}
		if o := g.owner(sql[i:j]); o != "" && o != module {
			return sql[i:j], o
		}
		i = j
	}
	return "", ""
}

func wordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
