package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/monolith/orders"
)

// ficusCLI runs ficus in process with a live context and returns its exit status and output.
func ficusCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errw)
	report(&errw, err)
	return exitCode(err), out.String(), errw.String()
}

// TestSagasListAndResume: a saga whose compensation cannot reach the inventory service is
// parked stuck; ficus sagas list shows it (and -state filters), ficus sagas resume takes it
// up again once the service is back, and the running monolith finishes it: the order
// cancelled, its stock released.
func TestSagasListAndResume(t *testing.T) {
	dir := t.TempDir()
	s, err := shop.Start(context.Background(), shop.Options{Dir: dir, Remote: []string{"inventory", "payments"},
		ReplyWithin: 50 * time.Millisecond,
		Saga: &orders.SagaOptions{Timeout: 300 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			CompensationAttempts: 3, Poll: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	post := func(url, body string) map[string]any {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := map[string]any{"_status": float64(resp.StatusCode), "_body": string(b)}
		for _, kv := range regexp.MustCompile(`"(id|status)":"([^"]*)"`).FindAllStringSubmatch(string(b), 2) {
			if _, ok := m[kv[1]]; !ok {
				m[kv[1]] = kv[2]
			}
		}
		return m
	}
	cust := post(s.URL+"/api/customers", `{"name":"Sam","email":"sam@sagas.test","credit_limit_cents":100000}`)["id"].(string)
	post(s.InventoryURL+"/api/inventory/items", `{"sku":"SAGA-1","name":"Saga","price_cents":100,"on_hand":3}`)
	s.Stop("payments") // the charge cannot be made: the saga times out and compensates…
	o := post(s.URL+"/api/orders", fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":"SAGA-1","quantity":2}]}`, cust))
	if o["_status"] != float64(202) {
		t.Fatalf("placing: %v", o)
	}
	id := o["id"].(string)
	// …and, while it waits for its timeout, the inventory service goes down too: the release
	// fails until the saga is stuck.
	s.Stop("inventory")
	cfgPath := filepath.Join(dir, "sagas.yaml")
	cfg := fmt.Sprintf("backends: { monolith: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: monolith }]\nmonolith: { database: %q }\n",
		"sqlite:"+filepath.Join(dir, "monolith.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var out string
	for {
		code, stdout, stderr := ficusCLI(t, "sagas", "list", "-c", cfgPath, "-state", "stuck")
		if code != 0 {
			t.Fatalf("ficus sagas list: exit %d: %s", code, stderr)
		}
		if strings.Contains(stdout, id) {
			out = stdout
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the saga was not stuck within 20s:\n%s", stdout)
		}
		time.Sleep(50 * time.Millisecond) // poll the saga's state
	}
	for _, want := range []string{"ORDER", id, "place", "stuck", "release", "order_timeout", "1 stuck", "ficus sagas resume ORDER"} {
		if !strings.Contains(out, want) {
			t.Errorf("ficus sagas list -state stuck lacks %q:\n%s", want, out)
		}
	}
	if _, stdout, _ := ficusCLI(t, "sagas", "list", "-c", cfgPath, "-state", "placed"); strings.Contains(stdout, id) {
		t.Errorf("-state placed lists the stuck saga:\n%s", stdout)
	}
	if code, _, stderr := ficusCLI(t, "sagas", "list", "-c", cfgPath, "-state", "bogus"); code != 2 || !strings.Contains(stderr, "want one of") {
		t.Errorf("a bad -state: exit %d: %s", code, stderr)
	}
	if code, _, stderr := ficusCLI(t, "sagas", "resume", "-c", cfgPath, "no-such-order"); code != 1 || !strings.Contains(stderr, "no saga for order") {
		t.Errorf("resuming an unknown saga: exit %d: %s", code, stderr)
	}

	if err := s.Restart("inventory"); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := ficusCLI(t, "sagas", "resume", "-c", cfgPath, id)
	if code != 0 || !strings.Contains(stdout, "resumed saga "+id+" at release") || !strings.Contains(stdout, "stuck at release after 3 attempts") {
		t.Fatalf("ficus sagas resume: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := ficusCLI(t, "sagas", "resume", "-c", cfgPath, id); code != 1 || !strings.Contains(stderr, "not stuck") {
		t.Errorf("resuming it again: exit %d: %s", code, stderr)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, stdout, _ := ficusCLI(t, "sagas", "list", "-c", cfgPath, "-state", "cancelled")
		if strings.Contains(stdout, id) {
			break
		}
		if time.Now().After(deadline) {
			_, all, _ := ficusCLI(t, "sagas", "list", "-c", cfgPath)
			t.Fatalf("the resumed saga did not end cancelled within 20s:\n%s", all)
		}
		time.Sleep(50 * time.Millisecond) // poll the saga's state
	}
	resp, err := http.Get(s.InventoryURL + "/api/inventory/items/SAGA-1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"reserved":0`) || !strings.Contains(string(b), `"on_hand":3`) {
		t.Errorf("after the compensation the item is %s", b)
	}
}
