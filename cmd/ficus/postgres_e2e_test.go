package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs ficus itself on PostgreSQL: the user changes database: in config.yaml to
// a postgres:// URL and nothing else.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t, testUpOnPostgres, testMissingPostgresDatabase)
}

// testUpOnPostgres: ficus up with a postgres:// database serves orders through the facade,
// stores them in PostgreSQL and relays their events to the bus.
func testUpOnPostgres(t *testing.T) {
	dsn := storetest.DSN(t)
	dir := t.TempDir()
	a := freeAddrs(t, 4)
	cfg := fmt.Sprintf(`facade: { listen: %s, admin: { listen: %s } }
backends: { monolith: { url: http://%s, timeout: 10s } }
routes: [{ match: { path: / }, to: monolith }]
monolith: { listen: %s, database: '%s' }
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, a[0], a[1], a[2], a[2], dsn, a[3])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ficusBin, "check", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ficus check refuses the config: %v\n%s", err, out)
	}

	up := exec.Command(ficusBin, "up", "-c", cfgPath)
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log pgOutput
	up.Stdout, up.Stderr = &log, &log
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
		<-exited
	})

	facade := "http://" + a[0]
	deadline := time.Now().Add(90 * time.Second)
	for {
		if status, _ := pgRequest(t, "GET", facade+"/api/inventory/items", ""); status == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ficus up exited (%v) before serving:\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ficus up never served the facade:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	status, body := pgRequest(t, "POST", facade+"/api/customers", `{"name":"Pat Postgres","email":"pat@example.com","credit_limit_cents":100000}`)
	if status != http.StatusCreated {
		t.Fatalf("creating a customer: %d %s", status, body)
	}
	var customer struct{ ID string }
	if err := json.Unmarshal(body, &customer); err != nil {
		t.Fatal(err)
	}
	if status, body := pgRequest(t, "POST", facade+"/api/inventory/items", `{"sku":"PG-1","name":"Elephant","price_cents":250,"on_hand":3}`); status != http.StatusCreated {
		t.Fatalf("creating an item: %d %s", status, body)
	}
	status, body = pgRequest(t, "POST", facade+"/api/orders", `{"customer_id":"`+customer.ID+`","lines":[{"sku":"PG-1","quantity":2}]}`)
	if status != http.StatusCreated {
		t.Fatalf("placing an order: %d %s", status, body)
	}
	var order struct{ ID string }
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatal(err)
	}

	// The order is in PostgreSQL, and its event leaves the outbox for the bus.
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	var n int64
	if err := db.Table("orders_orders").Where("id = ?", order.ID).Count(&n).Error; err != nil || n != 1 {
		t.Fatalf("order %s in PostgreSQL: %d rows, %v", order.ID, n, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var sent int64
		err := db.Table("ficus_outbox").Where("subject = ? AND sent_at IS NOT NULL", order.ID).Count(&sent).Error
		if err != nil {
			t.Fatal(err)
		}
		if sent == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the order's event never left the outbox:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := syscall.Kill(up.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("ficus up exited with %v:\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("ficus up did not stop on interrupt:\n%s", log.String())
	}
}

// testMissingPostgresDatabase: a URL naming a database the server does not have stops ficus up
// at once with a message that names it, where it looked, and how to create it, without the
// password.
func testMissingPostgresDatabase(t *testing.T) {
	u, err := url.Parse(storetest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/ficus_missing_db"
	u.User = url.UserPassword(u.User.Username(), "s3cret")
	dir := t.TempDir()
	a := freeAddrs(t, 4)
	cfg := fmt.Sprintf(`facade: { listen: %s, admin: { listen: %s } }
backends: { monolith: { url: http://%s } }
routes: [{ match: { path: / }, to: monolith }]
monolith: { listen: %s, database: '%s' }
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, a[0], a[1], a[2], a[2], u.String(), a[3])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ficusBin, "up", "-c", cfgPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("ficus up with a missing database: err %v (context %v)\n%s", err, ctx.Err(), out)
	}
	for _, want := range []string{`"ficus_missing_db"`, u.Host, "does not exist", "createdb"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "s3cret") {
		t.Errorf("the output shows the password:\n%s", out)
	}
}

// TestCheckRefusesABadPostgresURL: ficus check explains a postgres URL it cannot use, with
// the file, line and field, and without the password.
func TestCheckRefusesABadPostgresURL(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	cfg := "backends: { monolith: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: monolith }]\n" +
		"monolith: { database: 'postgres://shop:s3cret@127.0.0.1:5432/?sslmode=disable' }\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ficusBin, "check", "-c", cfgPath).CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	if want := cfgPath + ":3:13: monolith.database:"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "names no database") {
		t.Errorf("want %q and the reason in:\n%s", want, out)
	}
	if strings.Contains(string(out), "s3cret") {
		t.Errorf("the output shows the password:\n%s", out)
	}
}

// pgRequest sends one JSON request and returns the status and body (0 when it could not be sent).
func pgRequest(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// pgOutput is a buffer a child process's output can be copied into while the test reads it.
type pgOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *pgOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *pgOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
