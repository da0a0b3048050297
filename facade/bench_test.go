package facade

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

// The benchmarks send the same small GET directly to a loopback backend, through a stock
// httputil.ReverseProxy, and through the facade with every policy on, so `make bench` can
// report the facade's overhead as ratios measured in the same run.

func benchBackend(b *testing.B) *httptest.Server {
	b.Helper()
	body := []byte(`{"sku":"A-1","on_hand":42}`)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(s.Close)
	return s
}

func benchClient(b *testing.B) *http.Client {
	t := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}
	b.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t}
}

func runBench(b *testing.B, target string) {
	client := benchClient(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(target)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkDirect(b *testing.B) {
	runBench(b, benchBackend(b).URL+"/api/inventory/items/A-1")
}

func BenchmarkStockReverseProxy(b *testing.B) {
	u, _ := url.Parse(benchBackend(b).URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = NewTransport()
	proxy := httptest.NewServer(rp)
	b.Cleanup(proxy.Close)
	runBench(b, proxy.URL+"/api/inventory/items/A-1")
}

func BenchmarkFacade(b *testing.B) {
	backend := benchBackend(b)
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
backends:
  inventory:
    url: %s
    timeout: 2s
    retry: { attempts: 3, backoff: 10ms, max_backoff: 100ms, budget: 0.2 }
    breaker: { consecutive_failures: 5, open_for: 30s }
    bulkhead: { max_concurrent: 512, max_queue: 512 }
  monolith: { url: %s }
routes:
  - match: { path: /api/orders }
    to: monolith
  - match: { path: /api/payments, headers: { X-Canary: "1" } }
    to: monolith
  - match: { path: /api/inventory }
    to: inventory
    fallback: monolith
  - match: { path: / }
    to: monolith
`, backend.URL, backend.URL)))
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AdminToken: "t"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	proxy := httptest.NewServer(f.Handler())
	b.Cleanup(proxy.Close)
	runBench(b, proxy.URL+"/api/inventory/items/A-1")
}

// BenchmarkRouterMatch measures matching one path against a table of 22 routes.
func BenchmarkRouterMatch(b *testing.B) {
	cfg := benchRoutes()
	f, err := New(cfg, Options{AdminToken: "t"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	t := f.table.Load()
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		if t.router.Match("GET", "/api/inventory/items/A-1", h) < 0 {
			b.Fatal("no match")
		}
	}
}

func benchRoutes() *config.Config {
	var routes string
	for i := range 20 {
		routes += fmt.Sprintf("  - match: { path: /api/r%d }\n    to: b\n", i)
	}
	routes += "  - match: { path: /api/inventory }\n    to: b\n  - match: { path: / }\n    to: b\n"
	cfg, err := config.Parse("bench.yaml", []byte("backends:\n  b: { url: http://127.0.0.1:1 }\nroutes:\n"+routes))
	if err != nil {
		panic(err)
	}
	return cfg
}

// BenchmarkFacadeShadow is BenchmarkFacade's route with every request shadowed to a second
// backend, compared: next to BenchmarkFacade, what shadowing costs per request.
func BenchmarkFacadeShadow(b *testing.B) {
	backend, candidate := benchBackend(b), benchBackend(b)
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
backends:
  inventory: { url: %s, timeout: 2s }
  candidate: { url: %s, timeout: 2s }
routes:
  - match: { path: /api/inventory, methods: [GET] }
    to: inventory
    shadow: { to: candidate }
`, backend.URL, candidate.URL)))
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AdminToken: "t"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	proxy := httptest.NewServer(f.Handler())
	b.Cleanup(proxy.Close)
	runBench(b, proxy.URL+"/api/inventory/items/A-1")
}
