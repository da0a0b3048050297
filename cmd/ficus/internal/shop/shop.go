// Package shop assembles the whole shop in one process — an embedded bus, the extracted
// inventory and payments services and the monolith, each on its own database and its own
// loopback listener, with their outbox relays, the payments service's customer copy and the
// monolith's saga runner — for the tests and benchmarks that need every part at once: the
// remote adapters against the real services, the order saga end to end, local mode against
// remote mode. ficus up runs the same parts as processes.
package shop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/extracted/payments"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/outbox"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Options shape a shop. Dir is required; every other field works at its zero value.
type Options struct {
	// Dir holds the SQLite databases and the bus's store.
	Dir string
	// Remote lists the capabilities (inventory, payments) the monolith reaches through its
	// remote adapters; the others it calls in process. Default none: local mode.
	Remote []string
	// Database returns the DSN of a component's database (monolith, inventory, payments).
	// Default: sqlite:Dir/NAME.db.
	Database func(component string) string
	// Backend adjusts the config of the backend the monolith reaches a service through
	// (timeouts, retries, breaker) before the monolith starts. Default: config.yaml's
	// defaults with a 2s timeout and 3 attempts.
	Backend func(name string, b *config.Backend)
	// Saga replaces the saga's settings. Default: monolith.saga's defaults.
	Saga *orders.SagaOptions
	// ReplyWithin is monolith.saga.reply_within. Default 2s.
	ReplyWithin time.Duration
	// Wrap, if set, wraps each service's handler (a test's fault injection).
	Wrap func(service string, h http.Handler) http.Handler
	// Logger receives every part's logs. Default: discarded.
	Logger *slog.Logger
}

// Shop is a running shop.
type Shop struct {
	// URL is the monolith's base URL; InventoryURL and PaymentsURL the services'.
	URL, InventoryURL, PaymentsURL string
	Monolith                       *monolith.Monolith
	Inventory                      *inventory.Server
	Payments                       *payments.Server
	// Bus is a connection to the shop's bus.
	Bus *bus.Bus

	mu       sync.Mutex
	cleanups []func()
	servers  map[string]*server
	errs     []error
	relays   []func() // stop the outbox relays
}

// server is a component served on a loopback listener that a test can stop and start again
// on the same address (a service going down and coming back).
type server struct {
	addr    string
	handler http.Handler
	srv     *http.Server
	done    chan struct{}
}

func (s *server) start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.addr, err)
	}
	s.addr = ln.Addr().String()
	s.srv = web.NewServer(s.handler, web.ServerOptions{})
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return nil
}

func (s *server) stop() {
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// Start starts a shop; Close stops it. ctx bounds the start only: the shop runs until Close.
func Start(ctx context.Context, opts Options) (_ *Shop, err error) {
	if opts.Dir == "" {
		return nil, errors.New("shop: Options.Dir is required")
	}
	if opts.Database == nil {
		opts.Database = func(name string) string { return "sqlite:" + filepath.Join(opts.Dir, name+".db") }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Wrap == nil {
		opts.Wrap = func(_ string, h http.Handler) http.Handler { return h }
	}
	s := &Shop{servers: map[string]*server{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	s.defer_(end)
	events, stopBus, err := bus.StartEmbedded(life, config.Events{Embedded: config.Embedded{
		Listen: "127.0.0.1:0", Store: filepath.Join(opts.Dir, "nats")}}, nil, opts.Logger)
	if err != nil {
		return nil, err
	}
	s.defer_(stopBus)
	if s.Bus, err = bus.Connect(ctx, events, bus.Options{Name: "shop"}); err != nil {
		return nil, err
	}
	s.defer_(s.Bus.Close)

	if s.Inventory, err = inventory.Open(ctx, opts.Database("inventory"), inventory.Options{Logger: opts.Logger}); err != nil {
		return nil, err
	}
	s.defer_(func() { _ = s.Inventory.Close() })
	if s.Payments, err = payments.Open(ctx, opts.Database("payments"), payments.Options{Logger: opts.Logger}); err != nil {
		return nil, err
	}
	s.defer_(func() { _ = s.Payments.Close() })
	for name, h := range map[string]http.Handler{"inventory": s.Inventory.Handler(), "payments": s.Payments.Handler()} {
		srv := &server{addr: "127.0.0.1:0", handler: opts.Wrap(name, h)}
		if err := srv.start(); err != nil {
			return nil, err
		}
		s.servers[name] = srv
		s.defer_(srv.stop)
	}
	s.InventoryURL, s.PaymentsURL = "http://"+s.servers["inventory"].addr, "http://"+s.servers["payments"].addr

	// The monolith's config as a file would give it, defaults and validation included.
	var yml strings.Builder
	fmt.Fprintf(&yml, "backends:\n  monolith: { url: http://127.0.0.1:1 }\n")
	for _, capability := range opts.Remote {
		srv, ok := s.servers[capability]
		if !ok {
			return nil, fmt.Errorf("shop: no service %q to reach remotely (have inventory, payments)", capability)
		}
		b := config.Backend{URL: "http://" + srv.addr, Timeout: config.Duration(2 * time.Second), Retry: config.Retry{Attempts: 3}}
		if opts.Backend != nil {
			opts.Backend(capability, &b)
		}
		fmt.Fprintf(&yml, "  %s: %s\n", capability, backendYAML(b))
	}
	fmt.Fprintf(&yml, "routes: [{ match: { path: / }, to: monolith }]\nmonolith:\n  database: %q\n  modules: {", opts.Database("monolith"))
	for i, capability := range opts.Remote {
		if i > 0 {
			yml.WriteString(", ")
		}
		fmt.Fprintf(&yml, "%s: remote", capability)
	}
	yml.WriteString("}\n")
	if opts.ReplyWithin > 0 {
		fmt.Fprintf(&yml, "  saga: { reply_within: %s }\n", opts.ReplyWithin)
	}
	cfg, err := config.Parse(filepath.Join(opts.Dir, "config.yaml"), []byte(yml.String()))
	if err != nil {
		return nil, fmt.Errorf("shop: the monolith's config: %w", err)
	}
	if s.Monolith, err = monolith.Open(ctx, cfg, monolith.Options{Logger: opts.Logger, Saga: opts.Saga}); err != nil {
		return nil, err
	}
	s.defer_(func() { _ = s.Monolith.Close() })

	// The background work of each part, as ficus serve runs it.
	for name, db := range map[string]*gorm.DB{"monolith": s.Monolith.DB, "inventory": s.Inventory.DB, "payments": s.Payments.DB} {
		relay := outbox.NewRelay(db, s.Bus, outbox.RelayOptions{Name: name, Logger: opts.Logger})
		store.OnCommit(db, relay.Notify)
		s.relays = append(s.relays, s.background(life, name+"'s outbox relay", relay.Run))
	}
	s.background(life, "the payments service's customer copy", func(ctx context.Context) error { return s.Payments.FollowCustomers(ctx, s.Bus) })
	s.background(life, "the order sagas", s.Monolith.RunSagas)
	s.background(life, "the orders' payment events", func(ctx context.Context) error {
		return s.Monolith.FollowPayments(ctx, s.Bus, opts.Logger)
	})
	mono := &server{addr: "127.0.0.1:0", handler: s.Monolith.Handler()}
	if err := mono.start(); err != nil {
		return nil, err
	}
	s.servers["monolith"] = mono
	s.defer_(mono.stop)
	s.URL = "http://" + mono.addr
	return s, nil
}

// backendYAML writes b as a flow mapping of config.yaml.
func backendYAML(b config.Backend) string {
	out := fmt.Sprintf("{ url: %s, timeout: %s, retry: { attempts: %d", b.URL, b.Timeout, max(b.Retry.Attempts, 1))
	if b.Retry.Backoff > 0 {
		out += fmt.Sprintf(", backoff: %s", b.Retry.Backoff)
	}
	if b.Retry.MaxBackoff > 0 {
		out += fmt.Sprintf(", max_backoff: %s", b.Retry.MaxBackoff)
	}
	if b.Retry.Budget > 0 {
		out += fmt.Sprintf(", budget: %g", b.Retry.Budget)
	}
	out += " }"
	if b.Breaker.ConsecutiveFailures > 0 || b.Breaker.OpenFor > 0 {
		out += fmt.Sprintf(", breaker: { consecutive_failures: %d, open_for: %s }", max(b.Breaker.ConsecutiveFailures, 1), max(b.Breaker.OpenFor.D(), time.Millisecond))
	}
	if b.Bulkhead.MaxConcurrent > 0 {
		out += fmt.Sprintf(", bulkhead: { max_concurrent: %d, max_queue: %d }", b.Bulkhead.MaxConcurrent, b.Bulkhead.MaxQueue)
	}
	return out + " }"
}

// defer_ registers a cleanup, run in reverse order by Close.
func (s *Shop) defer_(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// background runs fn until Close or stop; an error it returns before then is kept for Err.
func (s *Shop) background(ctx context.Context, what string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s stopped: %w", what, err))
			s.mu.Unlock()
		}
	}()
	stop = func() { cancel(); <-done }
	s.defer_(stop)
	return stop
}

// StopRelays stops the three outbox relays: events committed from then on stay in the
// outboxes, as they do in a monolith run without its relay (ficus bench orders measures the
// orders themselves; ficus bench events, the event pipeline).
func (s *Shop) StopRelays() {
	for _, stop := range s.relays {
		stop()
	}
	for _, db := range []*gorm.DB{s.Monolith.DB, s.Inventory.DB, s.Payments.DB} {
		store.OnCommit(db, nil)
	}
}

// Err returns what stopped in the background before Close, if anything did.
func (s *Shop) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Stop takes a service (inventory, payments) down: its listener closes, and connections to
// it are refused until Restart.
func (s *Shop) Stop(service string) { s.servers[service].stop() }

// Restart serves a stopped service again, on the same address.
func (s *Shop) Restart(service string) error { return s.servers[service].start() }

// Close stops everything, in the reverse order of starting.
func (s *Shop) Close() {
	s.mu.Lock()
	cleanups := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for _, c := range slices.Backward(cleanups) {
		c()
	}
}

// ItemsURL returns the base URL that owns items in this shop: the inventory service when the
// monolith's inventory is remote, else the monolith.
func (s *Shop) ItemsURL(remote []string) string {
	if slices.Contains(remote, "inventory") {
		return s.InventoryURL
	}
	return s.URL
}

// AwaitCustomers returns once the payments service's customer copy has applied every
// customer the monolith has registered (their events published and consumed).
func (s *Shop) AwaitCustomers(ctx context.Context) error {
	for {
		n, _, err := outbox.Backlog(ctx, s.Monolith.DB)
		if err != nil {
			return err
		}
		st := s.Payments.CustomerCopy(ctx)
		if n == 0 && st.Status == payments.CopyCaughtUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the payments service's customer copy did not catch up: %d events unpublished, copy %s %s: %w",
				n, st.Status, strings.TrimSpace(st.Error), ctx.Err())
		case <-time.After(10 * time.Millisecond): // poll the copy's freshness
		}
	}
}
