package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ficus-project/ficus/platform/contract"
)

// Spec is one capability's data, as the migration sees it: which tables move, by which keys,
// and which events say that a row changed. It is data — table and column names — so that
// platform/ can hold it without importing the module or the service that own the tables.
type Spec struct {
	// Capability names it: "inventory".
	Capability string
	// Tables are copied in this order: a table after the tables its rows refer to.
	Tables []Table
	// Follows say which events keep which tables in step during sync.
	Follows []Follow
	// Rollups are tables of totals that sync recomputes from the rows they total.
	Rollups []Rollup
	// MonolithSource and ServiceSource are the CloudEvents sources of the capability's
	// events on either side: forward sync applies only the monolith's, reverse only the
	// service's.
	MonolithSource, ServiceSource string
}

// Table is one table of a capability. The monolith's module and the extracted service have it
// under the same name with the same columns.
type Table struct {
	// Name is the table's name: "inventory_items".
	Name string
	// Key are the primary key's columns, in the order rows are paged by.
	Key []string
	// Columns are every column copied, the key's included, in a fixed order.
	Columns []string
	// Version, if set, is a column that grows with every change of a row: a copy never
	// replaces a row with one of a lower version, so an old copy cannot undo a newer one.
	Version string
	// Refs are the table's references to other tables of the spec, which must hold the
	// referenced row before a row that refers to it is written.
	Refs []Ref
	// Monolith, if set, is how the monolith holds the table's data when it is not the same
	// table: the service's table is then its copy of data the monolith owns (a read model,
	// such as payments' copy of the customers). Such a table moves one way only: backfill,
	// sync and verify copy it from the monolith to the service, and the reverse direction
	// leaves it alone, since the monolith never stopped owning the data.
	Monolith *View
	// Local are columns whose value is the service's own (when it applied a change): copied
	// when a row is written, but neither compared by verify nor a reason to copy a row again.
	Local []string
}

// View is how the monolith holds the data of a service's table (Table.Monolith).
type View struct {
	// Table is the monolith's table: "customers_customers".
	Table string
	// Columns give, for each of the service table's Columns in order, the monolith's column
	// or SQL expression that holds its value. The key's must be plain columns: the monolith's
	// table is paged by them.
	Columns []string
}

// Ref is a reference from a column to the single-column key of another table.
type Ref struct {
	Column string
	Table  string
}

// Follow says that the subject of each event of Type is the key of a row of Table: when one
// arrives, sync copies that row again from the source. Tables no event follows are brought in
// step by sync's reconcile pass instead (see Sync).
type Follow struct {
	Type  string
	Table string
}

// Rollup is a table of totals: each row of Table, keyed by Key, holds in Column the sum of Sum
// over the rows of From whose GroupBy equals it and that match Where. Sync recomputes the
// totals of the groups whose rows it copied from the copied rows, never by adding deltas, so
// an event applied twice cannot count twice.
type Rollup struct {
	Table, Key, Column string
	From, GroupBy, Sum string
	// Where is an SQL condition on From's rows ("status = 'captured'"); empty for all rows.
	Where string
}

// Inventory is the inventory capability: items with their stock, and reservations with their
// lines. Every stock change emits stock_changed with the SKU as its subject; reservations
// emit no event of their own, so sync reconciles them.
func Inventory() Spec {
	return Spec{
		Capability: "inventory",
		Tables: []Table{
			{Name: "inventory_items", Key: []string{"sku"}, Version: "version",
				Columns: []string{"sku", "name", "price_cents", "on_hand", "reserved", "version", "updated_at"}},
			{Name: "inventory_reservations", Key: []string{"order_id"},
				Columns: []string{"order_id", "state", "updated_at"}},
			{Name: "inventory_reservation_lines", Key: []string{"order_id", "sku"},
				Columns: []string{"order_id", "sku", "quantity", "unit_price_cents"},
				Refs:    []Ref{{Column: "order_id", Table: "inventory_reservations"}, {Column: "sku", Table: "inventory_items"}}},
		},
		Follows:        []Follow{{Type: contract.TypeStockChanged, Table: "inventory_items"}},
		MonolithSource: "/monolith/inventory",
		ServiceSource:  "/services/inventory",
	}
}

// Payments is the payments capability: payments, and each customer's outstanding total.
// Captures and refunds emit events with the payment id as their subject. The service also
// keeps a copy of the customers it charges (the monolith's customers module owns them), fed
// by their events; backfill seeds it and sync's reconcile passes keep it whole, so customers
// whose events the stream no longer holds are known to the service too.
func Payments() Spec {
	return Spec{
		Capability: "payments",
		Tables: []Table{
			{Name: "payments_payments", Key: []string{"id"},
				Columns: []string{"id", "customer_id", "amount_cents", "reference", "status", "created_at", "refunded_at"}},
			{Name: "payments_balances", Key: []string{"customer_id"},
				Columns: []string{"customer_id", "outstanding_cents"}},
			{Name: "payments_customers", Key: []string{"customer_id"}, Version: "version", Local: []string{"applied_at"},
				Columns: []string{"customer_id", "email", "credit_limit_cents", "version", "updated_at", "applied_at"},
				// A backfilled row says it was applied when the monolith made the change: it
				// is at least that fresh.
				Monolith: &View{Table: "customers_customers",
					Columns: []string{"id", "email", "credit_limit_cents", "version", "updated_at", "updated_at"}}},
		},
		Follows: []Follow{
			{Type: contract.TypePaymentCaptured, Table: "payments_payments"},
			{Type: contract.TypePaymentRefunded, Table: "payments_payments"},
		},
		Rollups: []Rollup{{Table: "payments_balances", Key: "customer_id", Column: "outstanding_cents",
			From: "payments_payments", GroupBy: "customer_id", Sum: "amount_cents", Where: "status = 'captured'"}},
		MonolithSource: "/monolith/payments",
		ServiceSource:  "/services/payments",
	}
}

// Specs are the capabilities ficus migrate knows, by name.
func Specs() []Spec { return []Spec{Inventory(), Payments()} }

// Lookup returns the spec of capability, or an error naming the ones there are.
func Lookup(capability string) (Spec, error) {
	var names []string
	for _, s := range Specs() {
		if s.Capability == capability {
			return s, nil
		}
		names = append(names, s.Capability)
	}
	return Spec{}, fmt.Errorf("%w %q (capabilities: %s)", ErrUnknownCapability, capability, strings.Join(names, ", "))
}

// table returns the spec's table called name.
func (s Spec) table(name string) (Table, bool) {
	for _, t := range s.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// tables returns the spec's tables that move in direction dir, in copy order: all of them
// forward, reverse only those the monolith holds under the same name.
func (s Spec) tables(dir Direction) []Table {
	if dir == Forward {
		return s.Tables
	}
	var out []Table
	for _, t := range s.Tables {
		if t.Monolith == nil {
			out = append(out, t)
		}
	}
	return out
}

// onMonolith returns t as the monolith holds it: t itself, or, for a copy the service keeps
// of the monolith's data, a table of the monolith's name whose columns are the view's
// columns (in t's order) and whose key is the monolith's columns of t's key.
func (t Table) onMonolith() Table {
	if t.Monolith == nil {
		return t
	}
	v := Table{Name: t.Monolith.Table, Columns: t.Monolith.Columns, Version: t.Version, Local: t.Local}
	for _, k := range t.Key {
		v.Key = append(v.Key, t.Monolith.Columns[t.colIdx(k)])
	}
	return v
}

// types returns the event types the spec follows, each once.
func (s Spec) types() []string {
	var out []string
	for _, f := range s.Follows {
		if !slices.Contains(out, f.Type) {
			out = append(out, f.Type)
		}
	}
	return out
}

// followed reports whether an event or a rollup keeps table in step.
func (s Spec) followed(table string) bool {
	for _, f := range s.Follows {
		if f.Table == table {
			return true
		}
	}
	for _, r := range s.Rollups {
		if r.Table == table {
			return true
		}
	}
	return false
}

// validate checks that the spec is complete and refers only to its own tables and columns.
func (s Spec) validate() error {
	var errs []string
	if s.Capability == "" || len(s.Tables) == 0 || s.MonolithSource == "" || s.ServiceSource == "" {
		errs = append(errs, "a spec needs a capability, tables and both event sources")
	}
	seen := map[string]bool{}
	for _, t := range s.Tables {
		if len(t.Key) == 0 || len(t.Columns) == 0 {
			errs = append(errs, fmt.Sprintf("table %s: needs a key and columns", t.Name))
		}
		for _, c := range t.Key {
			if !slices.Contains(t.Columns, c) {
				errs = append(errs, fmt.Sprintf("table %s: key column %s is not among its columns", t.Name, c))
			}
		}
		if t.Version != "" && !slices.Contains(t.Columns, t.Version) {
			errs = append(errs, fmt.Sprintf("table %s: version column %s is not among its columns", t.Name, t.Version))
		}
		for _, c := range t.Local {
			if !slices.Contains(t.Columns, c) || slices.Contains(t.Key, c) {
				errs = append(errs, fmt.Sprintf("table %s: local column %s is not one of its columns outside the key", t.Name, c))
			}
		}
		if v := t.Monolith; v != nil {
			switch {
			case v.Table == "" || len(v.Columns) != len(t.Columns):
				errs = append(errs, fmt.Sprintf("table %s: its monolith view needs a table and one column per column", t.Name))
			case len(t.Refs) > 0:
				errs = append(errs, fmt.Sprintf("table %s: a table the monolith holds under another shape cannot refer to other tables", t.Name))
			default:
				for _, k := range t.Key {
					if c := v.Columns[t.colIdx(k)]; !plainColumn(c) {
						errs = append(errs, fmt.Sprintf("table %s: key column %s is %q on the monolith, not a plain column", t.Name, k, c))
					}
				}
			}
		}
		for _, r := range t.Refs {
			p, ok := s.table(r.Table)
			switch {
			case !ok || !seen[r.Table]:
				errs = append(errs, fmt.Sprintf("table %s: refers to %s, which is not a table copied before it", t.Name, r.Table))
			case len(p.Key) != 1:
				errs = append(errs, fmt.Sprintf("table %s: refers to %s, whose key is not one column", t.Name, r.Table))
			case !slices.Contains(t.Columns, r.Column):
				errs = append(errs, fmt.Sprintf("table %s: reference column %s is not among its columns", t.Name, r.Column))
			}
		}
		seen[t.Name] = true
	}
	for _, f := range s.Follows {
		if t, ok := s.table(f.Table); !ok || len(t.Key) != 1 {
			errs = append(errs, fmt.Sprintf("event %s: follows %s, which is not a table of the spec with a one-column key", f.Type, f.Table))
		}
	}
	for _, r := range s.Rollups {
		t, ok := s.table(r.Table)
		from, okFrom := s.table(r.From)
		if !ok || !okFrom || len(t.Key) != 1 || t.Key[0] != r.Key || !slices.Contains(from.Columns, r.GroupBy) || !slices.Contains(from.Columns, r.Sum) {
			errs = append(errs, fmt.Sprintf("rollup %s: its table, key, source table and columns must be the spec's", r.Table))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("migration spec %s: %s", s.Capability, strings.Join(errs, "; "))
	}
	return nil
}

// plainColumn reports whether c is a column name rather than an expression.
func plainColumn(c string) bool {
	if c == "" {
		return false
	}
	for _, r := range c {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
