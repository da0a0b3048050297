package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/migrate"
)

// startOfStream is an events stream that stands at its beginning: the test copies the
// monolith's rows without a bus.
type startOfStream struct{}

func (startOfStream) Position(context.Context) (bus.Position, error) {
	return bus.Position{First: 1}, nil
}

// shadowShop is the monolith and the extracted inventory service, the service's data copied
// from the monolith's by a backfill, and a facade that serves inventory from the monolith
// and shadows it to the service through a proxy that can change one field of its answers.
type shadowShop struct {
	mono    *monolith.Monolith
	svc     *inventory.Server
	f       *facade.Facade
	url     string
	mutate  atomic.Bool // the service's answers about ITEM-7 get another name
	monoURL string
}

func startShadowShop(t *testing.T) *shadowShop {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	secret := []byte("the facade and the services share this")
	s := &shadowShop{}
	var err error
	s.mono, err = monolith.New(ctx, &config.Config{Monolith: config.Monolith{Database: "sqlite:" + filepath.Join(dir, "monolith.db")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.mono.Close() })
	monoURL, stop, err := serveLoopback(s.mono.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	s.monoURL = monoURL
	for i := range 40 {
		body := fmt.Sprintf(`{"sku":"ITEM-%d","name":"Item %d","price_cents":%d,"on_hand":%d}`, i, i, 100+i, 10+i)
		resp, err := http.Post(monoURL+"/api/inventory/items", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("seeding the monolith: %v %v", resp, err)
		}
		resp.Body.Close()
	}

	s.svc, err = inventory.Open(ctx, "sqlite:"+filepath.Join(dir, "inventory.db"), inventory.Options{
		DryRun: dryrun.NewVerifier(secret, time.Minute, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.svc.Close() })
	m, err := migrate.New(migrate.Inventory(), migrate.Forward,
		migrate.Side{Name: "monolith", DB: s.mono.DB, Identity: "monolith"},
		migrate.Side{Name: "service", DB: s.svc.DB, Identity: "service"}, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Backfill(ctx, startOfStream{}, migrate.BackfillOptions{}); err != nil {
		t.Fatal(err)
	}
	svcURL, stop, err := serveLoopback(s.svc.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	target, _ := url.Parse(svcURL)
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = "" },
		ModifyResponse: func(resp *http.Response) error {
			if !s.mutate.Load() || !strings.HasSuffix(resp.Request.URL.Path, "/ITEM-7") {
				return nil
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			b = bytes.Replace(b, []byte(`"Item 7"`), []byte(`"Item Seven"`), 1)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		}}
	candidateURL, stop, err := serveLoopback(proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	cfg, err := config.Parse(filepath.Join(dir, "config.yaml"), []byte(fmt.Sprintf(`
backends:
  monolith: { url: %s }
  inventory: { url: %s, dry_run: true }
routes:
  - name: inventory
    match: { path: /api/inventory }
    to: monolith
    shadow:
      to: inventory
      learn: 0.2
      # Writes stamp each side's own clock; reads of copied rows do not differ.
      equivalent: [{ at: /updated_at, class: rfc3339 }]
  - match: { path: / }
    to: monolith
`, monoURL, candidateURL)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := contract.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	s.f, err = facade.New(cfg, facade.Options{DryRunSecret: secret, Endpoints: v.Operations()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.f.Close)
	s.url, stop, err = serveLoopback(s.f.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// report waits until the inventory route's shadow has dealt with n samples and returns its
// report.
func (s *shadowShop) report(t *testing.T, n int64) facade.ShadowReport {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep := s.f.ShadowReports()[0]
		if rep.Samples+rep.Dropped >= n {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shadow dealt with %d of %d samples in 10s: %+v", rep.Samples+rep.Dropped, n, rep)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShadowInventoryReadsToTheService: the facade shadows inventory reads from the monolith
// to the extracted service, under load (8 clients), and reports no unexpected difference,
// with learning on and no ignore rule; a service that changes one field is caught, the
// field named, on the endpoint it belongs to.
func TestShadowInventoryReadsToTheService(t *testing.T) {
	s := startShadowShop(t)
	const clients, each = 8, 60
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				path := fmt.Sprintf("/api/inventory/items/ITEM-%d", (c*each+i)%40)
				if i%5 == 0 {
					path = fmt.Sprintf("/api/inventory/items?limit=%d", 5+i%10)
				}
				resp, err := http.Get(s.url + path)
				if err != nil || resp.StatusCode != 200 || resp.Header.Get("Ficus-Backend") != "monolith" {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d client requests failed", failed.Load())
	}
	rep := s.report(t, clients*each)
	if rep.Differences != 0 || rep.Errors != 0 || rep.Dropped != 0 || rep.Matches+rep.Lag != clients*each {
		for _, e := range rep.Endpoints {
			for _, r := range e.Recent {
				t.Logf("%s: %+v", e.Endpoint, r.Differences)
			}
		}
		t.Fatalf("shadowing identical data: %d differences, %d errors, %d dropped, %d matches of %d", rep.Differences, rep.Errors, rep.Dropped, rep.Matches, clients*each)
	}
	names := map[string]bool{}
	for _, e := range rep.Endpoints {
		names[e.Endpoint] = true
		if len(e.Noise) > 0 {
			t.Errorf("%s learnt noise %v from a deterministic primary", e.Endpoint, e.Noise)
		}
	}
	if !names["GET /api/inventory/items/{sku}"] || !names["GET /api/inventory/items"] {
		t.Errorf("endpoints %v, want the contract's templates", names)
	}

	s.mutate.Store(true)
	resp, err := http.Get(s.url + "/api/inventory/items/ITEM-7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rep = s.report(t, clients*each+1)
	if rep.Differences != 1 {
		t.Fatalf("a changed name: %+v", rep)
	}
	for _, e := range rep.Endpoints {
		if e.Endpoint != "GET /api/inventory/items/{sku}" {
			continue
		}
		if len(e.TopFields) != 1 || e.TopFields[0].Field != "body /name" || e.Recent[0].Differences[0].Path != "/name" ||
			e.Recent[0].Differences[0].B != `"Item Seven"` {
			t.Errorf("the difference is not named: %+v %+v", e.TopFields, e.Recent)
		}
	}
}

// TestShadowedWritesLeaveTheServiceAlone: POSTs through the facade run for real on the
// monolith, and their shadowed copies run as dry runs on the service: compared (their answers
// match), and the service's database and outbox are as they were.
func TestShadowedWritesLeaveTheServiceAlone(t *testing.T) {
	s := startShadowShop(t)
	counts := func() (n [4]int64) {
		for i, table := range []string{"inventory_items", "inventory_reservations", "inventory_reservation_lines", "ficus_outbox"} {
			if err := s.svc.DB.Table(table).Count(&n[i]).Error; err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	var onHand int64
	if err := s.svc.DB.Table("inventory_items").Where("sku = ?", "ITEM-3").Select("on_hand").Scan(&onHand).Error; err != nil {
		t.Fatal(err)
	}
	before := counts()
	for _, w := range []struct{ path, body string }{
		{"/api/inventory/items", `{"sku":"NEW-1","name":"New","price_cents":100,"on_hand":3}`},
		{"/api/inventory/items/ITEM-3/restock", `{"quantity":5}`},
		{"/api/inventory/reservations", `{"order_id":"order-dry","lines":[{"sku":"ITEM-3","quantity":2}]}`},
	} {
		resp, err := http.Post(s.url+w.path, "application/json", strings.NewReader(w.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d", w.path, resp.StatusCode)
		}
	}
	rep := s.report(t, 3)
	if rep.Matches != 3 || rep.Differences != 0 || rep.Errors != 0 {
		t.Fatalf("shadowed writes: %+v", rep)
	}
	if got := counts(); got != before {
		t.Fatalf("the service's items, reservations, lines and outbox events: %v, before %v", got, before)
	}
	var after int64
	if err := s.svc.DB.Table("inventory_items").Where("sku = ?", "ITEM-3").Select("on_hand").Scan(&after).Error; err != nil || after != onHand {
		t.Fatalf("ITEM-3 on hand in the service: %d, before %d (%v)", after, onHand, err)
	}
	// The monolith did take them.
	resp, err := http.Get(s.monoURL + "/api/inventory/items/NEW-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the monolith lacks the item the client created: %d", resp.StatusCode)
	}
}
