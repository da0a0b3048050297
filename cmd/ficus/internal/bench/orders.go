package bench

import (
	"context"
	"encoding/json"
	"errors"
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
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/config"
)

// Bounds of OrdersOptions.
const (
	MaxOrders  = 1_000_000
	MaxClients = 1024
)

// OrdersOptions shape a run of Orders. Every field works at its zero value.
type OrdersOptions struct {
	// Orders is how many orders each measurement places. Default 5,000; at most MaxOrders.
	Orders int
	// Clients is how many place orders at once, each waiting for its answer before it sends
	// the next (closed loop). Default 16; at most MaxClients.
	Clients int
	// Databases are the engines to measure, one after the other: "sqlite" (a fresh file in
	// a temporary directory for each measurement) or a "postgres://…" URL (the user's
	// server; each measurement adds its own customer and item). Default: sqlite.
	Databases []string
	// URL, when set, sends the orders to a running monolith or facade instead, over HTTP
	// only: there is no in-process baseline then, and Databases is ignored.
	URL string
	// Customer is the customer id to order as with URL. Required with URL.
	Customer string
	// SKU is the item to order with URL. Default STICKER-FIG.
	SKU string
	// NoIdempotencyKey sends orders over HTTP without an Idempotency-Key header. By default
	// each carries its own key, so the server also claims the key and stores the response.
	NoIdempotencyKey bool
	// CPUProfile, when set, is a file to write a CPU profile of the whole run to.
	CPUProfile string
	// Record, when set, receives the load report's rows of the run (Report).
	Record func(Row)
}

// ErrOrdersOptions wraps every mistake in OrdersOptions.
var ErrOrdersOptions = errors.New("bench orders")

func (o *OrdersOptions) setDefaults() {
	if o.Orders == 0 {
		o.Orders = 5000
	}
	if o.Clients == 0 {
		o.Clients = 16
	}
	if len(o.Databases) == 0 {
		o.Databases = []string{"sqlite"}
	}
	if o.SKU == "" {
		o.SKU = "STICKER-FIG"
	}
}

func (o *OrdersOptions) validate() error {
	var errs []error
	if o.Orders < 1 || o.Orders > MaxOrders {
		errs = append(errs, fmt.Errorf("%w: -n %d is not between 1 and %d", ErrOrdersOptions, o.Orders, MaxOrders))
	}
	if o.Clients < 1 || o.Clients > MaxClients {
		errs = append(errs, fmt.Errorf("%w: -clients %d is not between 1 and %d", ErrOrdersOptions, o.Clients, MaxClients))
	}
	if o.URL != "" && o.Customer == "" {
		errs = append(errs, fmt.Errorf("%w: -customer is required with -url", ErrOrdersOptions))
	}
	for _, db := range o.Databases {
		if db != "sqlite" && !isPostgres(db) {
			errs = append(errs, fmt.Errorf("%w: -db %q: want sqlite or a postgres:// URL", ErrOrdersOptions, config.Redact(db)))
		}
	}
	return errors.Join(errs...)
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// engineName is the table's name for a database: sqlite or postgres.
func engineName(dsn string) string {
	if isPostgres(dsn) {
		return "postgres"
	}
	return "sqlite"
}

// ordersResult is one measurement: one engine, one path.
type ordersResult struct {
	engine, path string
	done, failed int
	elapsed      time.Duration
	lat          []time.Duration // sorted
	cpu          time.Duration   // this process's CPU time over the measurement
	err          error
}

func (r ordersResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.done) / r.elapsed.Seconds()
}

func (r ordersResult) cpuPerOrder() time.Duration {
	return r.cpu / time.Duration(max(r.done, 1))
}

func (r ordersResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

// Orders measures placing orders through the monolith. For each database it places the same
// one-line orders twice, each time on a fresh monolith: in process (orders.Service.Place, no
// HTTP: the baseline) and over HTTP on loopback (POST /api/orders, with an Idempotency-Key by
// default). It prints orders/s, latency percentiles and CPU per order for each, and the HTTP
// path's ratios to the baseline. A database that fails is reported in its row; the others
// still run, and Orders returns the failures.
func Orders(ctx context.Context, opts OrdersOptions, stdout io.Writer) error {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	if opts.CPUProfile != "" {
		pf, err := renameio.NewPendingFile(opts.CPUProfile)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer pf.Cleanup()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = pf.CloseAtomicallyReplace()
		}()
	}
	key := "an Idempotency-Key on every HTTP order"
	if opts.NoIdempotencyKey {
		key = "no Idempotency-Key"
	}
	fmt.Fprintf(stdout, "orders: %d one-line orders per run, %d clients, %s\n", opts.Orders, opts.Clients, key)

	var results []ordersResult
	if opts.URL != "" {
		client := newClient(opts.Clients)
		r := measureOrders(ctx, "remote", "HTTP", opts, httpPlacer(client, opts.URL, opts.Customer, opts.SKU, !opts.NoIdempotencyKey))
		results = append(results, r)
	} else {
		for _, dsn := range opts.Databases {
			results = append(results, measureEngine(ctx, dsn, opts)...)
		}
	}
	writeOrdersTable(stdout, results)
	if opts.URL != "" {
		fmt.Fprintln(stdout, "no in-process baseline against -url: the monolith runs elsewhere")
	}
	if opts.Record != nil {
		for _, r := range ordersRows(results) {
			opts.Record(r)
		}
	}
	var errs []error
	for _, r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("%s, %s: %w", r.engine, r.path, r.err))
		case r.failed > 0:
			errs = append(errs, fmt.Errorf("%s, %s: %d orders failed", r.engine, r.path, r.failed))
		}
	}
	return errors.Join(errs...)
}

// pathRemote is the row of orders placed by the saga, inventory and payments being the
// extracted services over HTTP.
const pathRemote = "HTTP, remote (saga)"

// measureEngine measures one database: in process, then over HTTP, then — on SQLite — over
// HTTP in remote mode, where the saga places each order across the extracted services.
func measureEngine(ctx context.Context, dsn string, opts OrdersOptions) (out []ordersResult) {
	engine := engineName(dsn)
	defer func() {
		if dsn != "sqlite" || len(out) != 2 || out[1].err != nil {
			return // one database cannot hold the monolith and both services' tables
		}
		out = append(out, measureRemote(ctx, opts))
	}()
	for _, path := range []string{"in process", "HTTP"} {
		r, err := func() (ordersResult, error) {
			m, cust, sku, cleanup, err := benchMonolith(ctx, dsn, opts.Orders)
			if err != nil {
				return ordersResult{}, err
			}
			defer cleanup()
			if path == "in process" {
				return measureOrders(ctx, engine, path, opts, func(ctx context.Context, _ int) error {
					_, err := m.Orders.Place(ctx, orders.PlaceOrder{CustomerID: cust, Lines: []orders.RequestLine{{SKU: sku, Quantity: 1}}})
					return err
				}), nil
			}
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
			if err != nil {
				return ordersResult{}, err
			}
			srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
			served := make(chan struct{})
			go func() { defer close(served); _ = srv.Serve(ln) }()
			defer func() { _ = srv.Close(); <-served }()
			client := newClient(opts.Clients)
			defer client.CloseIdleConnections()
			return measureOrders(ctx, engine, path, opts, httpPlacer(client, "http://"+ln.Addr().String(), cust, sku, !opts.NoIdempotencyKey)), nil
		}()
		if err != nil {
			r = ordersResult{engine: engine, path: path, err: err}
		}
		out = append(out, r)
		if r.err != nil {
			break // the engine is unusable; its HTTP run would fail the same way
		}
	}
	return out
}

// benchMonolith opens a monolith on dsn ("sqlite": a fresh file) with a customer whose credit
// never runs out and an item with stock for n orders, both new.
func benchMonolith(ctx context.Context, dsn string, n int) (m *monolith.Monolith, customerID, sku string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "ficus-bench-orders-")
	if err != nil {
		return nil, "", "", nil, err
	}
	if dsn == "sqlite" {
		dsn = "sqlite:bench.db"
	}
	cfg, err := config.Parse(filepath.Join(dir, "config.yaml"), fmt.Appendf(nil,
		"backends: { monolith: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: monolith }]\nmonolith: { database: %q }\n", dsn))
	if err == nil {
		m, err = monolith.New(ctx, cfg, nil)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", "", nil, err
	}
	cleanup = func() {
		_ = m.Close()
		os.RemoveAll(dir)
	}
	// Unique per run, so that a PostgreSQL database can serve run after run.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	limit, price, onHand := int64(1)<<50, int64(100), n+1
	cust, err := m.Customers.Create(ctx, customers.NewCustomer{Name: "Bench", Email: "bench-" + run + "@example.com", CreditLimitCents: &limit})
	if err == nil {
		sku = "BENCH-" + strings.ToUpper(run)
		_, err = m.Inventory.CreateItem(ctx, inventory.NewItem{SKU: sku, Name: "Bench item", PriceCents: &price, OnHand: &onHand})
	}
	if err != nil {
		cleanup()
		return nil, "", "", nil, fmt.Errorf("seeding the benchmark: %w", err)
	}
	return m, cust.ID, sku, cleanup, nil
}

// measureRemote places the orders over HTTP through a monolith whose inventory and payments
// are the extracted services, each on its own SQLite file and loopback listener, with the
// bus, relays and saga runner of ficus serve, all in this process: every order is a saga
// (reserve, charge, confirm as HTTP calls, each outcome recorded). The monolith waits long
// enough for each saga that every order is answered 201. As in the local rows, the outbox
// relays do not run while the orders are measured.
func measureRemote(ctx context.Context, opts OrdersOptions) ordersResult {
	r, err := func() (ordersResult, error) {
		dir, err := os.MkdirTemp("", "ficus-bench-saga-")
		if err != nil {
			return ordersResult{}, err
		}
		defer os.RemoveAll(dir)
		s, err := shop.Start(ctx, shop.Options{Dir: dir, Remote: []string{"inventory", "payments"}, ReplyWithin: 30 * time.Second,
			Backend: func(_ string, b *config.Backend) {
				// The services are in this process: what the bench measures is the saga, not a
				// bulkhead sized for production.
				b.Bulkhead = config.Bulkhead{}
			}})
		if err != nil {
			return ordersResult{}, err
		}
		defer s.Close()
		client := newClient(opts.Clients)
		defer client.CloseIdleConnections()
		run := strconv.FormatInt(time.Now().UnixNano(), 36)
		sku := "BENCH-" + strings.ToUpper(run)
		status, body := postJSON(ctx, client, s.URL+"/api/customers",
			fmt.Sprintf(`{"name":"Bench","email":"bench-%s@example.com","credit_limit_cents":%d}`, run, int64(1)<<50))
		if status != http.StatusCreated {
			return ordersResult{}, fmt.Errorf("adding the customer: %d %s", status, body)
		}
		var c struct{ ID string }
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			return ordersResult{}, err
		}
		if status, body := postJSON(ctx, client, s.InventoryURL+"/api/inventory/items",
			fmt.Sprintf(`{"sku":%q,"name":"Bench item","price_cents":100,"on_hand":%d}`, sku, opts.Orders+1)); status != http.StatusCreated {
			return ordersResult{}, fmt.Errorf("adding the item: %d %s", status, body)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.AwaitCustomers(wctx); err != nil {
			return ordersResult{}, err
		}
		// As in the local rows, no relay publishes the orders' events while they are
		// measured: they stay in the outboxes (bench events measures that pipeline).
		s.StopRelays()
		return measureOrders(ctx, "sqlite", pathRemote, opts, httpPlacer(client, s.URL, c.ID, sku, !opts.NoIdempotencyKey)), nil
	}()
	if err != nil {
		return ordersResult{engine: "sqlite", path: pathRemote, err: err}
	}
	return r
}

// postJSON sends one POST and returns its status and body.
func postJSON(ctx context.Context, client *http.Client, url, body string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// httpPlacer places order k with POST base/api/orders.
func httpPlacer(client *http.Client, base, customerID, sku string, withKey bool) func(context.Context, int) error {
	body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":1}]}`, customerID, sku)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	return func(ctx context.Context, k int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/orders", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if withKey {
			req.Header.Set("Idempotency-Key", "bench-"+run+"-"+strconv.Itoa(k))
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	}
}

// measureOrders has opts.Clients goroutines call place until opts.Orders orders are done.
func measureOrders(ctx context.Context, engine, path string, opts OrdersOptions, place func(context.Context, int) error) ordersResult {
	lat := make([]time.Duration, opts.Orders)
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	cpu0 := ProcessCPU()
	start := time.Now()
	for range opts.Clients {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= opts.Orders || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := place(ctx, k); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
				lat[k] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	r := ordersResult{engine: engine, path: path, elapsed: time.Since(start), cpu: ProcessCPU() - cpu0}
	r.done = min(int(next.Load()), opts.Orders)
	r.failed = int(failed.Load())
	r.lat = lat[:r.done]
	slices.Sort(r.lat)
	if p := firstErr.Load(); p != nil && r.failed == r.done {
		r.err = *p // nothing worked: say why rather than print a row of failures
	}
	return r
}

// writeOrdersTable prints one row a measurement, the HTTP rows with their ratios to the
// in-process row of the same engine.
func writeOrdersTable(w io.Writer, results []ordersResult) {
	defer writeRemoteRatio(w, results)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tpath\torders\tfailed\torders/s\tp50\tp99\tmax\tCPU/order\t× in process\tCPU × in process\t")
	base := map[string]ordersResult{}
	postgres := false
	for _, r := range results {
		postgres = postgres || r.engine == "postgres"
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\tfailed: see below\t\t\t\t\t\t\t\t\t\n", r.engine, r.path)
			continue
		}
		vs, cpuVs := "-", "-"
		if b, ok := base[r.engine]; ok && b.perSecond() > 0 && b.cpuPerOrder() > 0 {
			vs = fmt.Sprintf("%.2f", r.perSecond()/b.perSecond())
			cpuVs = fmt.Sprintf("%.2f", float64(r.cpuPerOrder())/float64(b.cpuPerOrder()))
		}
		if r.path == "in process" {
			base[r.engine] = r
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.engine, r.path, r.done, r.failed, r.perSecond(),
			fmtLatency(r.pct(0.50)), fmtLatency(r.pct(0.99)), fmtLatency(r.pct(1)), r.cpuPerOrder().Round(time.Microsecond), vs, cpuVs)
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "%s, %s: %v\n", r.engine, r.path, r.err)
		}
	}
	fmt.Fprintln(w, "CPU is this process's user+system time (server and clients together) per order; × in process is the HTTP row over the in-process row of the same engine")
	if postgres {
		fmt.Fprintln(w, "PostgreSQL's own CPU (its server processes) is not in CPU/order")
	}
}

// writeRemoteRatio says how remote mode's throughput and p99 compare with local mode's, over
// HTTP on the same engine in the same run (the aim is at least 0.5 of local's throughput).
func writeRemoteRatio(w io.Writer, results []ordersResult) {
	var local, remote *ordersResult
	for i := range results {
		r := &results[i]
		if r.err != nil || r.engine != "sqlite" {
			continue
		}
		switch r.path {
		case "HTTP":
			local = r
		case pathRemote:
			remote = r
		}
	}
	if local == nil || remote == nil || local.perSecond() == 0 {
		return
	}
	fmt.Fprintf(w, "remote mode (saga): %.0f orders/s, p99 %s = %.2f× local mode's %.0f orders/s, p99 %s, over HTTP in the same run (aim: at least 0.5×)\n",
		remote.perSecond(), fmtLatency(remote.pct(0.99)), remote.perSecond()/local.perSecond(), local.perSecond(), fmtLatency(local.pct(0.99)))
}
