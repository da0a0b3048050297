package shop_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/compare/scenarios"
	"github.com/ficus-project/ficus/platform/contract"
)

// router sends each capability's paths to whoever owns it in a shop, as the facade does at
// stage 2 of a migration: inventory and payments to their services, the rest to the monolith.
func router(t *testing.T, s *shop.Shop) string {
	t.Helper()
	proxy := func(base string) *httputil.ReverseProxy {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		return &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }}
	}
	mono, inv, pay := proxy(s.URL), proxy(s.InventoryURL), proxy(s.PaymentsURL)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/inventory"):
			inv.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/payments"):
			pay.ServeHTTP(w, r)
		default:
			mono.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestOrdersAlikeInLocalAndRemoteMode: the comparison suite's order scenarios give the same
// answers from a monolith that places orders in one transaction (A) and from one whose
// inventory and payments are the extracted services, placing orders through the saga (B),
// with every answer checked against the OpenAPI document. B waits long enough for each saga
// that it never answers 202 (the documented difference). Two documented differences are
// left out of the comparison: B's orders show their saga's progress, and an item's version
// counts the hold and the release of an order refused after its stock was reserved (in one
// transaction they roll back; a saga's steps are real changes, undone by compensations).
func TestOrdersAlikeInLocalAndRemoteMode(t *testing.T) {
	local := startShop(t, shop.Options{})
	remote := startShop(t, shop.Options{Remote: []string{"inventory", "payments"}, ReplyWithin: 30 * time.Second})
	suite, err := scenarios.Load("orders")
	if err != nil {
		t.Fatal(err)
	}
	v, err := contract.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := router(t, remote)
	rep, err := scenario.Run(ctx, suite,
		scenario.Target{Name: "local", URL: local.URL},
		scenario.Target{Name: "remote (saga)", URL: b, CaughtUp: remote.AwaitCustomers},
		scenario.Options{Endpoints: v.Operations(), Check: v.CheckResponse, Timeout: 40 * time.Second,
			Rules: compare.Rules{Ignore: []string{"/saga", "/version"}}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Fatalf("local vs remote mode:\n%s", buf.String())
	}
	if tot := rep.Totals(); tot.Matches == 0 || rep.Steps == 0 {
		t.Fatalf("nothing was compared: %+v\n%s", tot, buf.String())
	}
	t.Logf("\n%s", buf.String())
}
