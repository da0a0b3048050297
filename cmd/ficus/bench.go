package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/outbox/bench"
)

// cmdBench measures the system: `ficus bench orders` places orders with concurrent clients
// against a monolith it starts on a fresh database (or the one at -url) and prints orders/s
// and latency percentiles; `ficus bench facade` measures the facade's overhead against direct
// calls, a stock reverse proxy and nginx; `ficus bench events` measures events end to end.
func cmdBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "facade" {
		return cmdBenchFacade(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "events" {
		return cmdBenchEvents(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "orders" {
		return usageError{"bench needs a target: orders | facade | events"}
	}
	fs := flag.NewFlagSet("bench orders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 5000, "orders to place")
	c := fs.Int("c", 16, "concurrent clients")
	url := fs.String("url", "", "a running monolith or facade (default: start a monolith on a fresh database)")
	customer := fs.String("customer", "", "customer id to order as, with -url")
	sku := fs.String("sku", "STICKER-FIG", "SKU to order, with -url")
	withKey := fs.Bool("idempotency", true, "send an Idempotency-Key with every order")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{}
	}
	started := ""
	if *url == "" {
		dir, err := os.MkdirTemp("", "ficus-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg, err := config.Parse(filepath.Join(dir, "config.yaml"), []byte(
			"backends: { monolith: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: monolith }]\nmonolith: { database: sqlite:bench.db }\n"))
		if err != nil {
			return err
		}
		m, err := monolith.New(ctx, cfg, nil)
		if err != nil {
			return err
		}
		defer m.Close()
		limit, price, onHand := int64(1)<<50, int64(100), *n+1
		cust, err := m.Customers.Create(ctx, customers.NewCustomer{Name: "Bench", Email: "bench@example.com", CreditLimitCents: &limit})
		if err != nil {
			return err
		}
		if _, err := m.Inventory.CreateItem(ctx, inventory.NewItem{SKU: *sku, Name: "Bench item", PriceCents: &price, OnHand: &onHand}); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: m.Handler()}
		go srv.Serve(ln)
		defer srv.Close()
		*url, *customer = "http://"+ln.Addr().String(), cust.ID
		started = *url
	}
	if *customer == "" {
		return usageError{"-customer is required with -url"}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}}
	body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":1}]}`, *customer, *sku)
	lat := make([]time.Duration, *n)
	var next, failed atomic.Int64
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var wg sync.WaitGroup
	cpu0 := bench.ProcessCPU()
	start := time.Now()
	for i := 0; i < *c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(*n) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url+"/api/orders", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if *withKey {
					req.Header.Set("Idempotency-Key", "bench-"+strconv.FormatInt(t0.UnixNano(), 36)+"-"+strconv.FormatInt(k, 10))
				}
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusCreated {
					failed.Add(1)
				}
				lat[k] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := bench.ProcessCPU() - cpu0
	done := min(int(next.Load()), *n)
	lat = lat[:done]
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	fmt.Fprintf(stdout, "orders: %d placed with %d clients in %s, %d failed\n", done, *c, elapsed.Round(time.Millisecond), failed.Load())
	fmt.Fprintf(stdout, "orders/s: %.0f   p50: %s   p99: %s   max: %s\n",
		float64(done)/elapsed.Seconds(), pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	if *url == started {
		fmt.Fprintf(stdout, "CPU per order: %s (server and clients share this process; the steadiest figure on a busy machine)\n",
			(cpu / time.Duration(max(done, 1))).Round(time.Microsecond))
	}
	if failed.Load() > 0 {
		return fmt.Errorf("%d orders failed", failed.Load())
	}
	return nil
}
