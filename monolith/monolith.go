// Package monolith assembles the modular monolith: it opens the one database, applies each
// module's migrations, connects the modules through their ports (in process, or to an
// extracted service when config.yaml says remote), and serves their HTTP routes.
package monolith

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/customers"
	"github.com/ficus-project/ficus/monolith/inventory"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/monolith/payments"
	"github.com/ficus-project/ficus/monolith/remote"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Monolith is the assembled shop.
type Monolith struct {
	DB        *gorm.DB
	Customers *customers.Service
	Inventory *inventory.Service
	Payments  *payments.Service
	Orders    *orders.Service
	// Remote are the clients of the extracted services the monolith reaches, by capability.
	Remote map[string]*remote.Client
	echo   *echo.Echo
}

// Options tune Open. The zero value is ready to use; each field's comment gives its default.
type Options struct {
	// Logger receives request errors, the sagas' compensations and the remote adapters'
	// breaker changes. Default: none logged.
	Logger *slog.Logger
	// Registerer receives the sagas' and the remote adapters' metrics. Default: none.
	Registerer prometheus.Registerer
	// Transport sends the remote adapters' requests. Default: a transport of their own.
	Transport http.RoundTripper
	// Saga overrides the saga options config.yaml gives (tests shorten its times). Default:
	// those of monolith.saga.
	Saga *orders.SagaOptions
}

// New opens the monolith's database, migrates it and wires the modules.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Monolith, error) {
	return Open(ctx, cfg, Options{Logger: logger})
}

// Open is New with options.
func Open(ctx context.Context, cfg *config.Config, opts Options) (*Monolith, error) {
	db, err := store.Open(ctx, cfg.Monolith.Database, store.Options{
		Resolve: cfg.Resolve,
		Modules: []string{customers.Module, inventory.Module, payments.Module, orders.Module},
	})
	if err != nil {
		return nil, fmt.Errorf("monolith: %w", err)
	}
	m, err := assemble(ctx, db, cfg, opts)
	if err != nil {
		_ = store.Close(db)
		return nil, fmt.Errorf("monolith: %w", err)
	}
	return m, nil
}

func assemble(ctx context.Context, db *gorm.DB, cfg *config.Config, opts Options) (*Monolith, error) {
	migrations := []func(context.Context, *gorm.DB) error{
		outbox.Migrate, idempotency.Migrate, inbox.Migrate,
		customers.Migrate, inventory.Migrate, payments.Migrate, orders.Migrate,
	}
	for _, migrate := range migrations {
		if err := migrate(ctx, db); err != nil {
			return nil, err
		}
	}
	m := &Monolith{DB: db, Remote: map[string]*remote.Client{}}
	m.Customers = customers.New(db)
	m.Inventory = inventory.New(db)
	m.Payments = payments.New(db, localPayers{m.Customers})

	var stock orders.Stock = LocalStock(m.Inventory)
	var pay orders.Payments = LocalPayments(m.Payments)
	metrics := newRemoteMetrics(opts.Registerer)
	for _, capability := range config.Extractable {
		if cfg.Monolith.Modules[capability] != config.ModuleRemote {
			continue
		}
		b, ok := cfg.Backends[capability]
		if !ok {
			return nil, fmt.Errorf("module %s is remote, and config.yaml has no backend %q to reach its service", capability, capability)
		}
		c, err := remote.NewClient(capability, b, remote.Options{Transport: opts.Transport, Logger: opts.Logger,
			OnRetry: metrics.retry, OnBreakerChange: metrics.breaker})
		if err != nil {
			return nil, err
		}
		m.Remote[capability] = c
		switch capability {
		case "inventory":
			stock = remote.NewStock(c)
		case "payments":
			pay = remote.NewPayments(c)
		}
	}
	sg := cfg.Monolith.Saga
	sagaOpts := orders.SagaOptions{
		Timeout: sg.Timeout.D(), Backoff: sg.Backoff.D(), MaxBackoff: sg.MaxBackoff.D(),
		CompensationAttempts: sg.CompensationAttempts, Concurrency: sg.Concurrency, Lease: sg.Lease.D(),
		Settle: settle(cfg),
	}
	if opts.Saga != nil {
		sagaOpts = *opts.Saga
	}
	ordersOpts := orders.Options{
		BySaga:            len(m.Remote) > 0,
		Saga:              sagaOpts,
		StockInProcess:    m.Remote["inventory"] == nil,
		PaymentsInProcess: m.Remote["payments"] == nil,
		ReplyWithin:       sg.ReplyWithin.D(),
		DetailsTimeout:    sg.DetailsTimeout.D(),
		Logger:            opts.Logger,
		OnSagaSave:        newSagaMetrics(opts.Registerer),
	}
	m.Orders = orders.New(db, localCustomers{m.Customers}, stock, pay, ordersOpts)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(sagaGauge{db: db})
	}

	m.echo = web.New(opts.Logger, func() error {
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		return sqlDB.Ping()
	})
	idem := idempotency.Middleware(db, idempotency.Options{})
	ordersIdem := idem
	if m.Orders.SagaMode() {
		// The saga's remote calls cannot run inside the key's transaction: the claim commits
		// first, and a request run again after a crash finds its saga (orders.Place).
		ordersIdem = idempotency.Middleware(db, idempotency.Options{Mode: idempotency.Claimed,
			Lease: max(10*time.Second, 3*sg.ReplyWithin.D())})
	}
	g := m.echo.Group("")
	m.Customers.RegisterRoutes(g)
	m.Inventory.RegisterRoutes(g)
	m.Payments.RegisterRoutes(g, idem)
	m.Orders.RegisterRoutes(g, ordersIdem)
	return m, nil
}

// settle is how long a saga's release, finding no reservation after a reserve request that
// got no answer, waits for that request to arrive late: twice what one attempt may take.
func settle(cfg *config.Config) time.Duration {
	if b, ok := cfg.Backends["inventory"]; ok && b.Timeout.D() > 0 {
		return max(time.Second, 2*b.Timeout.D())
	}
	return 5 * time.Second
}

// Handler serves the shop's HTTP contract.
func (m *Monolith) Handler() http.Handler { return m.echo }

// ServeMetrics adds h (a Prometheus handler) at /metrics.
func (m *Monolith) ServeMetrics(h http.Handler) { m.echo.GET("/metrics", echo.WrapHandler(h)) }

// RunSagas drives the order sagas — those an earlier run left unfinished first — until ctx
// ends. It returns nil then.
func (m *Monolith) RunSagas(ctx context.Context) error { return m.Orders.Run(ctx) }

// FollowPayments completes sagas' charges from the payments service's events on b (see
// orders.Service.FollowPayments) until ctx ends; with payments in process it returns at once.
func (m *Monolith) FollowPayments(ctx context.Context, b *bus.Bus, logger *slog.Logger) error {
	if m.Remote["payments"] == nil {
		return nil
	}
	return m.Orders.FollowPayments(ctx, b, logger)
}

// Close stops the sagas being driven (they resume on the next start), closes the remote
// clients' idle connections and the database.
func (m *Monolith) Close() error {
	m.Orders.Close()
	for _, c := range m.Remote {
		c.Close()
	}
	return store.Close(m.DB)
}

// localCustomers adapts the customers module to the orders module's port.
type localCustomers struct{ s *customers.Service }

func (a localCustomers) Exists(ctx context.Context, id string) error {
	_, err := a.s.Get(ctx, id)
	return err
}

// localPayers adapts the customers module to the payments module's port.
type localPayers struct{ s *customers.Service }

func (a localPayers) Payer(ctx context.Context, id string) (payments.Payer, error) {
	c, err := a.s.Get(ctx, id)
	if errors.Is(err, customers.ErrNotFound) {
		return payments.Payer{}, payments.ErrCustomerNotFound
	}
	if err != nil {
		return payments.Payer{}, err
	}
	return payments.Payer{ID: c.ID, Email: c.Email, CreditLimitCents: c.CreditLimitCents}, nil
}

// LocalStock is the orders module's Stock port served by the inventory module in process:
// its calls join the caller's unit of work.
func LocalStock(s *inventory.Service) orders.Stock { return localStock{s} }

// localStock adapts the inventory module to the orders module's port.
type localStock struct{ s *inventory.Service }

func (a localStock) Reserve(ctx context.Context, orderID string, lines []orders.RequestLine) ([]orders.Line, error) {
	req := inventory.NewReservation{OrderID: orderID, Lines: make([]inventory.Line, len(lines))}
	for i, l := range lines {
		req.Lines[i] = inventory.Line{SKU: l.SKU, Quantity: l.Quantity}
	}
	r, err := a.s.Reserve(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]orders.Line, len(r.Lines))
	for i, l := range r.Lines {
		out[i] = orders.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out, nil
}

func (a localStock) Commit(ctx context.Context, orderID string) error {
	_, err := a.s.Commit(ctx, orderID)
	return err
}

func (a localStock) Release(ctx context.Context, orderID string) error {
	_, err := a.s.Release(ctx, orderID)
	return err
}

func (a localStock) Return(ctx context.Context, orderID string) error {
	_, err := a.s.Return(ctx, orderID)
	return err
}

func (a localStock) Reservation(ctx context.Context, orderID string) (contract.Reservation, error) {
	r, err := a.s.Reservation(ctx, orderID)
	if err != nil {
		return contract.Reservation{}, err
	}
	return r.Wire(), nil
}

// LocalPayments is the orders module's Payments port served by the payments module in
// process: its calls join the caller's unit of work.
func LocalPayments(s *payments.Service) orders.Payments { return localPayments{s} }

// localPayments adapts the payments module to the orders module's port.
type localPayments struct{ s *payments.Service }

func (a localPayments) Charge(ctx context.Context, customerID string, amount int64, orderID string) (string, error) {
	amt := amount
	p, err := a.s.Charge(ctx, payments.Charge{CustomerID: customerID, AmountCents: &amt, Reference: orderID})
	if err != nil {
		return "", err
	}
	return p.ID, nil
}

func (a localPayments) Refund(ctx context.Context, _, paymentID string) error {
	_, err := a.s.Refund(ctx, paymentID)
	return err
}

func (a localPayments) Payment(ctx context.Context, paymentID string) (contract.Payment, error) {
	p, err := a.s.Payment(ctx, paymentID)
	if err != nil {
		return contract.Payment{}, err
	}
	return p.Wire(), nil
}

// remoteMetrics counts what the remote adapters do.
type remoteMetrics struct {
	retries     *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

func newRemoteMetrics(reg prometheus.Registerer) remoteMetrics {
	m := remoteMetrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ficus_remote_retries_total",
			Help: "Retries the monolith's remote adapters sent, per service."}, []string{"service"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ficus_remote_breaker_transitions_total",
			Help: "Circuit breaker state changes of the monolith's remote adapters, per service and new state."}, []string{"service", "state"}),
	}
	if reg != nil {
		reg.MustRegister(m.retries, m.transitions)
	}
	return m
}

func (m remoteMetrics) retry(service string) { m.retries.WithLabelValues(service).Inc() }

func (m remoteMetrics) breaker(service string, _, to gobreaker.State) {
	m.transitions.WithLabelValues(service, to.String()).Inc()
}

// newSagaMetrics returns the hook that counts saga state changes.
func newSagaMetrics(reg prometheus.Registerer) func(from, to string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ficus_saga_transitions_total",
		Help: "Order saga state changes, by the state reached (running, compensating, stuck, placed, cancelled)."}, []string{"to"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return func(_, to string) { c.WithLabelValues(to).Inc() }
}

// sagaGauge reports how many order sagas are in each state when scraped: the stuck ones are
// what an operator must look at (alert on ficus_sagas{state="stuck"} > 0).
type sagaGauge struct{ db *gorm.DB }

var sagaDesc = prometheus.NewDesc("ficus_sagas", "Order sagas by state (running, compensating, stuck, placed, cancelled).", []string{"state"}, nil)

func (g sagaGauge) Describe(ch chan<- *prometheus.Desc) { ch <- sagaDesc }

func (g sagaGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := orders.CountSagas(ctx, g.db)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sagaDesc, err)
		return
	}
	for _, st := range orders.SagaStates {
		ch <- prometheus.MustNewConstMetric(sagaDesc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}
