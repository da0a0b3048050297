package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/migrate"
)

// TestSystemReader: what ficus serve facade gives the dashboard of the databases config.yaml
// names. Before a component has run its database is "not there yet" (and is not created by
// looking); once the monolith has run, its outbox backlog and its sagas show, unfinished
// sagas stuck first and a page of each state at most; a backfill shows as a migration of the
// database it wrote to.
func TestSystemReader(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(`backends:
  monolith: { url: http://127.0.0.1:1 }
routes: [{ match: { path: / }, to: monolith }]
monolith: { database: sqlite:data/monolith.db }
services:
  inventory: { listen: 127.0.0.1:2, database: sqlite:data/inventory.db }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := newSystemReader()
	t.Cleanup(r.Close)

	st := r.Status(ctx, cfg)
	if len(st.Outboxes) != 2 || st.Outboxes[0].Database != "monolith" || st.Outboxes[1].Database != "inventory" {
		t.Fatalf("outboxes = %+v, want the monolith's then inventory's", st.Outboxes)
	}
	for _, o := range st.Outboxes {
		if !strings.Contains(o.Error, "no database yet") {
			t.Errorf("%s before it ran: %+v, want \"no database yet\"", o.Database, o)
		}
	}
	if st.Sagas == nil || !strings.Contains(st.Sagas.Error, "no database yet") {
		t.Errorf("sagas before the monolith ran: %+v", st.Sagas)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "monolith.db")); err == nil {
		t.Error("reading the status created the monolith's database")
	}

	// The monolith runs: its seed records events no relay has published.
	m, err := monolith.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	// Sagas in every state: 12 running (more than a page), one compensating, one stuck, 3 placed.
	base := time.Now().UTC().Add(-time.Hour)
	addSaga := func(i int, state, steps, reason string) {
		t.Helper()
		at := base.Add(time.Duration(i) * time.Second)
		err := m.DB.Exec(`INSERT INTO orders_sagas (id, kind, customer_id, request, lines, total_cents, payment_id, state, step,
			steps, reason, version, owner, lease_until, next_at, deadline, created_at, updated_at)
			VALUES (?, 'place', 'c1', '[]', '[]', 100, '', ?, '', ?, ?, 1, '', ?, ?, ?, ?, ?)`,
			fmt.Sprintf("0190000%02d-0000-7000-8000-000000000000", i), state, steps, reason, at, at, at.Add(time.Hour), at, at).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		addSaga(i, "running", `[{"name":"reserve","status":"running","attempts":2,"error":"inventory: 503"}]`, "")
	}
	addSaga(20, "compensating", `[{"name":"release","status":"running","attempts":1}]`, `{"code":"payment_declined","detail":"declined"}`)
	addSaga(21, "stuck", `[{"name":"reserve","status":"done","attempts":1},{"name":"release","status":"failed","attempts":5,"error":"inventory down"}]`,
		`{"code":"payment_declined","detail":"declined"}`)
	for i := range 3 {
		addSaga(30+i, "placed", `[]`, "")
	}

	// Inventory's data copied to its service's database.
	svc, err := inventory.Open(ctx, "sqlite:"+filepath.Join(dir, "data", "inventory.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	mig, err := migrate.New(migrate.Inventory(), migrate.Forward,
		migrate.Side{Name: "monolith", DB: m.DB, Identity: "monolith"},
		migrate.Side{Name: "service", DB: svc.DB, Identity: "service"}, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mig.Backfill(ctx, startOfStream{}, migrate.BackfillOptions{}); err != nil {
		t.Fatal(err)
	}

	st = r.Status(ctx, cfg)
	if len(st.Errors) != 0 {
		t.Errorf("errors: %v", st.Errors)
	}
	mono := st.Outboxes[0]
	if mono.Error != "" || mono.Backlog == 0 || mono.Oldest == nil {
		t.Errorf("the monolith's outbox = %+v, want the seed's events waiting", mono)
	}
	if inv := st.Outboxes[1]; inv.Error != "" {
		t.Errorf("inventory's outbox = %+v, want it read", inv)
	}
	sg := st.Sagas
	if sg == nil || sg.Error != "" {
		t.Fatalf("sagas = %+v", sg)
	}
	if sg.Counts["running"] != 12 || sg.Counts["compensating"] != 1 || sg.Counts["stuck"] != 1 || sg.Counts["placed"] != 3 {
		t.Errorf("counts = %v", sg.Counts)
	}
	if len(sg.Active) != 2+dashboardSagaPage || !sg.More {
		t.Fatalf("%d unfinished sagas listed (more: %v), want the stuck and the compensating one and a page of the running", len(sg.Active), sg.More)
	}
	if s := sg.Active[0]; s.State != "stuck" || s.Step != "release" || s.Attempts != 5 || s.Error != "inventory down" || s.Reason != "payment_declined" {
		t.Errorf("first listed = %+v, want the stuck saga at its failed release", s)
	}
	if s := sg.Active[1]; s.State != "compensating" {
		t.Errorf("second listed = %+v, want the compensating saga", s)
	}
	for _, s := range sg.Active[2:] {
		if s.State != "running" || s.Step != "reserve" || s.Error != "inventory: 503" {
			t.Errorf("listed %+v, want a running saga at its reserve", s)
		}
	}
	if len(st.Migrations) != 1 {
		t.Fatalf("migrations = %+v, want inventory's backfill", st.Migrations)
	}
	mg := st.Migrations[0]
	if mg.Capability != "inventory" || mg.Direction != "forward" || mg.Target != "inventory" || mg.BackfillDone == nil || len(mg.Tables) == 0 {
		t.Errorf("migration = %+v", mg)
	}
	for _, tb := range mg.Tables {
		if !tb.Done || tb.Copied != tb.Expected {
			t.Errorf("table %+v, want copied in full", tb)
		}
	}

	// A reload that points the service elsewhere lets go of its old database.
	cfg.Services["inventory"] = config.Service{Database: "sqlite:data/elsewhere.db"}
	st = r.Status(ctx, cfg)
	if !strings.Contains(st.Outboxes[1].Error, "no database yet") || len(r.dbs) != 1 {
		t.Errorf("after the move: %+v, %d databases held, want the new one missing and only the monolith's held", st.Outboxes[1], len(r.dbs))
	}
}
