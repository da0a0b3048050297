package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/payments/internal/db"
	"github.com/ficus-project/ficus/extracted/payments/internal/domain"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/inbox"
	"github.com/ficus-project/ficus/platform/metrics"
	"github.com/ficus-project/ficus/platform/store"
)

// CustomersConsumer is the durable bus consumer that feeds the service's copy of the
// customers, and its name in the inbox.
const CustomersConsumer = "payments-service-customers"

// customerEventTypes are the events the copy is made of.
var customerEventTypes = []string{contract.TypeCustomerRegistered, contract.TypeCustomerCreditLimitChange}

// errNotFollowing is the copy's freshness while FollowCustomers is not running: nobody can
// say how far behind it is.
var errNotFollowing = errors.New("the customer copy is not following the bus (not connected yet)")

// backlogger is what the copy needs of the bus to know how far behind it is.
type backlogger interface {
	Backlog(ctx context.Context, consumer string) (uint64, error)
}

// customerCopy is the service's copy of the customers: it applies their events, says how
// far behind the monolith it is, and lets a charge wait for a customer it has not received.
type customerCopy struct {
	db  *gorm.DB
	log *slog.Logger
	// wait bounds how long await waits for a customer; grace is how long the copy must have
	// been seen caught up before await gives up on one; poll is how often await looks again
	// when nothing wakes it.
	wait, grace, poll time.Duration

	// bus is set while FollowCustomers runs.
	bus atomic.Pointer[backlogger]
	// changedMu guards changed, which is closed (and replaced) after every batch of events
	// the copy commits, to wake waiting charges.
	changedMu sync.Mutex
	changed   chan struct{}

	m copyMetrics
}

type copyMetrics struct {
	backlog   prometheus.Gauge
	following prometheus.Gauge
	lastEvent prometheus.Gauge
	events    *prometheus.CounterVec
	waits     *prometheus.CounterVec
}

func newCustomerCopy(gdb *gorm.DB, opts Options) (*customerCopy, error) {
	c := &customerCopy{db: gdb, log: opts.Logger, wait: opts.CustomerWait, grace: opts.CustomerGrace,
		poll: 20 * time.Millisecond, changed: make(chan struct{})}
	c.m = copyMetrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ficus_payments_customer_copy_backlog",
			Help: "Customer events on the bus that the payments service's customer copy has not applied yet (last measured)."}),
		following: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ficus_payments_customer_copy_following",
			Help: "1 while the customer copy follows the bus (its backlog is measured), 0 otherwise."}),
		lastEvent: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ficus_payments_customer_copy_last_event_timestamp_seconds",
			Help: "When the monolith made the newest customer change the copy has applied (the event's time), as a Unix time."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ficus_payments_customer_copy_events_total",
			Help: "Customer events the copy handled: applied, or stale (an older version than the copy has)."}, []string{"result"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ficus_payments_customer_waits_total",
			Help: "Charges for a customer the copy did not have, by outcome: arrived (it came in time), absent (the copy was caught up without it: 404), not_yet_known (503)."},
			[]string{"outcome"}),
	}
	if opts.Registerer != nil {
		var err error
		c.m.backlog = metrics.Register(opts.Registerer, c.m.backlog, &err)
		c.m.following = metrics.Register(opts.Registerer, c.m.following, &err)
		c.m.lastEvent = metrics.Register(opts.Registerer, c.m.lastEvent, &err)
		c.m.events = metrics.Register(opts.Registerer, c.m.events, &err)
		c.m.waits = metrics.Register(opts.Registerer, c.m.waits, &err)
		if err != nil {
			return nil, fmt.Errorf("registering the customer copy's metrics: %w", err)
		}
	}
	return c, nil
}

// follow runs the copy's consumer on b until ctx is done, and measures the copy's backlog
// every interval meanwhile.
func (c *customerCopy) follow(ctx context.Context, b *bus.Bus, interval time.Duration) error {
	var src backlogger = b
	c.bus.Store(&src)
	c.m.following.Set(1)
	defer func() {
		c.bus.Store(nil)
		c.m.following.Set(0)
	}()
	measureCtx, stopMeasuring := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			_, _ = c.backlog(measureCtx) // updates the gauge
			select {
			case <-measureCtx.Done():
				return
			case <-t.C:
			}
		}
	})
	defer func() { stopMeasuring(); wg.Wait() }()
	return b.ConsumeBatch(ctx, CustomersConsumer, c.handle, bus.ConsumerOptions{Types: customerEventTypes, Logger: c.log})
}

// handle applies a batch of customer events through the inbox: each once, all in one unit
// of work. It counts them and wakes waiting charges once they have committed.
func (c *customerCopy) handle(ctx context.Context, evs []event.Event) error {
	// Keyed by event id: on PostgreSQL the unit of work may run again after a conflict, and
	// must not count twice.
	results := make(map[string]string, len(evs))
	var newest time.Time
	err := inbox.HandleBatch(ctx, c.db, CustomersConsumer, evs, func(ctx context.Context, tx *gorm.DB, e event.Event) error {
		applied, err := c.apply(tx, e)
		if err != nil {
			return err
		}
		results[e.ID] = "stale"
		if applied {
			results[e.ID] = "applied"
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range evs {
		if r, ok := results[e.ID]; ok {
			c.m.events.WithLabelValues(r).Inc()
			if r == "applied" && e.Time.After(newest) {
				newest = e.Time
			}
		}
	}
	if !newest.IsZero() {
		c.m.lastEvent.Set(float64(newest.UnixNano()) / 1e9)
	}
	c.notify()
	return nil
}

// apply changes the copy by one event, in tx, and reports whether it changed anything (an
// event older than what the copy has does not). An event that breaks its schema is
// permanent: retrying cannot fix it, so the bus parks it in the dead-letter stream.
func (c *customerCopy) apply(tx *gorm.DB, e event.Event) (bool, error) {
	if err := contract.ValidateEvent(e); err != nil {
		return false, bus.Permanent(err)
	}
	now := tx.NowFunc().UTC()
	switch e.Type {
	case contract.TypeCustomerRegistered:
		var d contract.CustomerRegistered
		if err := e.Decode(&d); err != nil {
			return false, bus.Permanent(err)
		}
		return true, db.RegisterCustomer(tx, d.CustomerID, d.Email, d.CreditLimitCents, e.Time.UTC(), now)
	case contract.TypeCustomerCreditLimitChange:
		var d contract.CustomerCreditLimitChanged
		if err := e.Decode(&d); err != nil {
			return false, bus.Permanent(err)
		}
		return db.SetCreditLimit(tx, d.CustomerID, d.CreditLimitCents, d.Version, e.Time.UTC(), now)
	}
	// A type the consumer does not ask for (a dead letter replayed to it, say): nothing of
	// the copy's.
	return false, nil
}

// notify wakes every await that is waiting for the copy to change.
func (c *customerCopy) notify() {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *customerCopy) changes() <-chan struct{} {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	return c.changed
}

// backlog returns how many customer events the bus holds that the copy has not applied, and
// records it in the backlog gauge. It fails while the copy is not following the bus.
func (c *customerCopy) backlog(ctx context.Context) (uint64, error) {
	src := c.bus.Load()
	if src == nil {
		return 0, errNotFollowing
	}
	n, err := (*src).Backlog(ctx, CustomersConsumer)
	if err != nil {
		return 0, fmt.Errorf("measuring the customer copy's backlog: %w", err)
	}
	c.m.backlog.Set(float64(n))
	return n, nil
}

// has reports whether the copy has customerID, registration included.
func (c *customerCopy) has(ctx context.Context, customerID string) (bool, error) {
	_, err := db.Payer(store.Conn(ctx, c.db), customerID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, domain.ErrCustomerNotFound):
		return false, nil
	}
	return false, err
}

// await returns nil once the copy has customerID, or once the copy has been caught up with
// the bus for the grace period without it (the customer does not exist, as far as anything
// the monolith published says; Charge then answers 404 as the monolith would). The grace
// period covers the few milliseconds between the monolith committing a registration and
// its relay publishing the event, when the bus cannot know of it yet. It returns
// ErrCustomerNotYetKnown when the copy is still behind (or cannot tell) after c.wait.
func (c *customerCopy) await(ctx context.Context, customerID string) error {
	start := time.Now()
	deadline := time.NewTimer(c.wait)
	defer deadline.Stop()
	waited := false
	for {
		// Take the channel before looking, so that a change between the look and the wait
		// still wakes this one.
		changed := c.changes()
		known, err := c.has(ctx, customerID)
		if err != nil {
			return fmt.Errorf("looking up customer %s: %w", customerID, err)
		}
		if known {
			if waited {
				c.m.waits.WithLabelValues("arrived").Inc()
			}
			return nil
		}
		waited = true
		n, berr := c.backlog(ctx)
		if berr == nil && n == 0 && time.Since(start) >= c.grace {
			c.m.waits.WithLabelValues("absent").Inc()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			c.m.waits.WithLabelValues("not_yet_known").Inc()
			if berr != nil {
				return fault.Wrapf(domain.ErrCustomerNotYetKnown, "customer %s; the copy cannot tell how far behind it is: %v", customerID, berr)
			}
			return fault.Wrapf(domain.ErrCustomerNotYetKnown, "customer %s; %d customer events still to apply", customerID, n)
		case <-changed:
		case <-time.After(c.poll):
		}
	}
}

// CopyStatus is the freshness of the service's copy of the customers, as GET
// /readyz/customers shows it.
type CopyStatus struct {
	// Status is caught_up (every customer event the bus holds is applied), behind, or
	// unknown (the service is not following the bus: not connected yet).
	Status string `json:"status"`
	// Backlog is how many customer events the bus holds that the copy has not applied; absent
	// when unknown.
	Backlog *uint64 `json:"backlog,omitempty"`
	// Error says why the status is unknown.
	Error string `json:"error,omitempty"`
}

// Copy statuses.
const (
	CopyCaughtUp = "caught_up"
	CopyBehind   = "behind"
	CopyUnknown  = "unknown"
)

// status measures the copy's freshness now.
func (c *customerCopy) status(ctx context.Context) CopyStatus {
	n, err := c.backlog(ctx)
	switch {
	case err != nil:
		return CopyStatus{Status: CopyUnknown, Error: err.Error()}
	case n > 0:
		return CopyStatus{Status: CopyBehind, Backlog: &n}
	}
	return CopyStatus{Status: CopyCaughtUp, Backlog: &n}
}

// serveStatus answers GET /readyz/customers: 200 with the status when the copy is caught
// up, 503 otherwise, so that a poller (the comparison's CaughtUp, a deploy script) waits for
// an answer of 200.
func (c *customerCopy) serveStatus(ec echo.Context) error {
	st := c.status(ec.Request().Context())
	code := http.StatusOK
	if st.Status != CopyCaughtUp {
		code = http.StatusServiceUnavailable
	}
	return ec.JSON(code, st)
}
