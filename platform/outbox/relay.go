package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/event"
	"github.com/ficus-project/ficus/platform/metrics"
	"github.com/ficus-project/ficus/platform/store"
)

// LeaseTable is the table that says which relay may publish each outbox.
const LeaseTable = "ficus_outbox_lease"

// Publisher is what the relay needs from the bus: publish events in order, and return only
// once all of them are stored. On error any of them may have been stored; the relay publishes
// them all again, so the publisher must deduplicate on the event id (JetStream does, on the
// Nats-Msg-Id header).
type Publisher interface {
	Publish(ctx context.Context, evs ...event.Event) error
}

// RelayOptions tune a Relay. The zero value is ready to use.
type RelayOptions struct {
	// Name names the outbox: the lease is per name, and metrics carry it as the "outbox"
	// label. Default "outbox".
	Name string
	// BatchSize is the most events published in one round. Default 500.
	BatchSize int
	// PollInterval is how often an idle relay looks for new rows when nobody calls Notify.
	// Default 25ms.
	PollInterval time.Duration
	// Linger is how long a relay woken by Notify waits for more commits before it reads, so
	// that under load a round carries many events rather than one. Default 2ms; negative
	// disables it.
	Linger time.Duration
	// MinBackoff and MaxBackoff bound the exponential pause after a failed round (bus or
	// database down). Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// LeaseTTL is how long a relay's lease lasts without renewal; it is renewed every third
	// of it. A relay that dies without releasing its lease delays the next one by at most
	// this long. Default 10s.
	LeaseTTL time.Duration
	// Holder identifies this relay in the lease table. Default: host name, process id and a
	// random suffix.
	Holder string
	// Registerer receives the relay's metrics. Default: none registered.
	Registerer prometheus.Registerer
	// Logger receives failures. Default: discarded.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *RelayOptions) setDefaults() {
	if o.Name == "" {
		o.Name = "outbox"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 25 * time.Millisecond
	}
	if o.Linger == 0 {
		o.Linger = 2 * time.Millisecond
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Holder = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Relay publishes an outbox's rows to the bus, oldest first, and marks them sent. Its writes go
// through store.Write, so on SQLite they queue with the application's writers.
//
// Rows are selected by "sent_at IS NULL ORDER BY seq", never by a high-water mark of the last
// sequence published: on PostgreSQL a transaction that took a lower seq can commit after one
// with a higher seq, and a high-water mark would skip it for ever. Delivery is at least once:
// a relay that dies after publishing and before marking rows sent publishes them again, and
// the bus (Nats-Msg-Id) and the consumers' inbox drop the duplicates. Only the relay holding
// the outbox's lease publishes, so two relays never race on one outbox. The relay never
// deletes rows: a retention.Pruner with PruneRule does, for the whole database.
type Relay struct {
	db      *gorm.DB
	pub     Publisher
	opts    RelayOptions
	log     *slog.Logger
	wake    chan struct{}
	metrics *relayMetrics
	// metricsErr is a registration failure, reported by Run.
	metricsErr error

	leaseRenewAt time.Time
	gaugesAt     time.Time
}

// NewRelay returns a relay that publishes db's outbox through pub. Run starts it.
func NewRelay(db *gorm.DB, pub Publisher, opts RelayOptions) *Relay {
	opts.setDefaults()
	m, err := newRelayMetrics(opts.Registerer, opts.Name)
	return &Relay{
		db:         db,
		pub:        pub,
		opts:       opts,
		log:        opts.Logger.With("outbox", opts.Name),
		wake:       make(chan struct{}, 1),
		metrics:    m,
		metricsErr: err,
	}
}

// Notify wakes the relay to look for new rows now rather than at its next poll. Call it after
// committing a transaction that added events; it never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is done, then releases the lease and returns nil. Call it once per
// Relay; run several Relays for availability. Failures of the bus or
// the database are retried with exponential backoff; Run returns an error only if it cannot
// start.
func (r *Relay) Run(ctx context.Context) error {
	if r.metricsErr != nil {
		return fmt.Errorf("running outbox relay %s: %w", r.opts.Name, r.metricsErr)
	}
	defer r.release()
	backoff := r.opts.MinBackoff
	fail := func(what string, err error) {
		if ctx.Err() == nil {
			r.log.Warn("outbox relay: "+what, "err", err, "retry_in", backoff)
		}
		sleep(ctx, backoff, nil)
		backoff = min(backoff*2, r.opts.MaxBackoff)
	}
	for ctx.Err() == nil {
		r.updateGauges(ctx)
		if !r.now().Before(r.leaseRenewAt) {
			held, err := r.acquire(ctx)
			if err != nil {
				fail("acquiring lease", err)
				continue
			}
			if !held {
				r.metrics.leader.Set(0)
				r.log.Debug("outbox relay: lease held by another relay", "retry_in", r.opts.LeaseTTL/3)
				sleep(ctx, r.opts.LeaseTTL/3, nil)
				continue
			}
			r.metrics.leader.Set(1)
		}
		n, err := r.relayBatch(ctx)
		if err != nil {
			r.metrics.errors.Inc()
			fail("relaying", err)
			continue
		}
		backoff = r.opts.MinBackoff
		if n < r.opts.BatchSize {
			if woken := sleep(ctx, r.opts.PollInterval, r.wake); woken && r.opts.Linger > 0 {
				sleep(ctx, r.opts.Linger, nil)
			}
		}
	}
	return nil
}

// pendingRow is an unsent outbox row.
type pendingRow struct {
	Seq     int64
	Payload []byte
}

// relayBatch publishes the oldest unsent rows and marks them sent. It returns how many.
func (r *Relay) relayBatch(ctx context.Context) (int, error) {
	var rows []pendingRow
	err := r.db.WithContext(ctx).Table(Table).Select("seq, payload").
		Where("sent_at IS NULL").Order("seq").Limit(r.opts.BatchSize).Find(&rows).Error
	if err != nil {
		return 0, fmt.Errorf("reading outbox: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	evs := make([]event.Event, len(rows))
	seqs := make([]int64, len(rows))
	for i, row := range rows {
		if err := json.Unmarshal(row.Payload, &evs[i]); err != nil {
			return 0, fmt.Errorf("decoding outbox row %d: %w", row.Seq, err)
		}
		seqs[i] = row.Seq
	}
	if err := r.pub.Publish(ctx, evs...); err != nil {
		return 0, fmt.Errorf("publishing %d events: %w", len(evs), err)
	}
	err = store.Write(ctx, r.db, func(_ context.Context, tx *gorm.DB) error {
		return tx.Table(Table).Where("seq IN ?", seqs).Update("sent_at", r.now()).Error
	})
	if err != nil {
		// Published but not marked: the next round publishes them again, as duplicates the
		// bus drops.
		return 0, fmt.Errorf("marking %d events sent: %w", len(seqs), err)
	}
	r.metrics.relayed.Add(float64(len(rows)))
	return len(rows), nil
}

// acquire takes or renews the lease. It reports whether this relay holds it.
func (r *Relay) acquire(ctx context.Context) (bool, error) {
	now := r.now()
	var taken int64
	err := store.Write(ctx, r.db, func(_ context.Context, tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO `+LeaseTable+` (name, holder, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE `+LeaseTable+`.holder = excluded.holder OR `+LeaseTable+`.expires_at < ?`,
			r.opts.Name, r.opts.Holder, now.Add(r.opts.LeaseTTL).UnixMilli(), now.UnixMilli())
		taken = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return false, fmt.Errorf("taking outbox lease: %w", err)
	}
	if taken == 0 {
		r.leaseRenewAt = time.Time{}
		return false, nil
	}
	r.leaseRenewAt = now.Add(r.opts.LeaseTTL / 3)
	return true, nil
}

// release gives the lease up so a successor need not wait for it to expire.
func (r *Relay) release() {
	if r.leaseRenewAt.IsZero() {
		return
	}
	r.metrics.leader.Set(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := store.Write(ctx, r.db, func(_ context.Context, tx *gorm.DB) error {
		return tx.Exec(`UPDATE `+LeaseTable+` SET expires_at = 0 WHERE name = ? AND holder = ?`,
			r.opts.Name, r.opts.Holder).Error
	})
	if err != nil {
		r.log.Debug("outbox relay: releasing lease", "err", err)
	}
	r.leaseRenewAt = time.Time{}
}

// updateGauges refreshes the backlog gauges, at most twice a second.
func (r *Relay) updateGauges(ctx context.Context) {
	now := r.now()
	if now.Before(r.gaugesAt) {
		return
	}
	r.gaugesAt = now.Add(500 * time.Millisecond)
	n, oldest, err := Backlog(ctx, r.db)
	if err != nil {
		return
	}
	r.metrics.backlog.Set(float64(n))
	if n == 0 {
		r.metrics.oldestAge.Set(0)
	} else {
		r.metrics.oldestAge.Set(max(now.Sub(oldest).Seconds(), 0))
	}
}

func (r *Relay) now() time.Time { return r.opts.Now().UTC() }

// sleep waits for d, ctx or a wake-up, whichever comes first, and reports whether it was a
// wake-up.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
		return true
	}
	return false
}

// Backlog returns how many events db's outbox has not sent yet, and when the oldest of them
// was recorded.
func Backlog(ctx context.Context, db *gorm.DB) (int64, time.Time, error) {
	var n int64
	if err := db.WithContext(ctx).Table(Table).Where("sent_at IS NULL").Count(&n).Error; err != nil {
		return 0, time.Time{}, fmt.Errorf("measuring outbox backlog: %w", err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	var oldest []struct{ CreatedAt time.Time }
	err := db.WithContext(ctx).Table(Table).Select("created_at").Where("sent_at IS NULL").
		Order("seq").Limit(1).Find(&oldest).Error
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("measuring outbox backlog: %w", err)
	}
	if len(oldest) == 0 {
		return n, time.Time{}, nil
	}
	return n, oldest[0].CreatedAt, nil
}

// List returns up to limit events recorded in db's outbox after sequence afterSeq (0 for the
// start), oldest first, sent or not. Sent rows older than the outbox's retention (PruneRule)
// are gone. It reads what has committed: on PostgreSQL a transaction still open may commit
// later with a lower seq than rows already listed, so paging by afterSeq suits inspection
// and tests, not delivery (the relay never pages so).
func List(ctx context.Context, db *gorm.DB, afterSeq int64, limit int) ([]event.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	var rows []pendingRow
	err := db.WithContext(ctx).Table(Table).Select("seq, payload").
		Where("seq > ?", afterSeq).Order("seq").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("listing outbox: %w", err)
	}
	evs := make([]event.Event, len(rows))
	for i, row := range rows {
		if err := json.Unmarshal(row.Payload, &evs[i]); err != nil {
			return nil, fmt.Errorf("listing outbox: decoding row %d: %w", row.Seq, err)
		}
	}
	return evs, nil
}

// relayMetrics are a relay's collectors.
type relayMetrics struct {
	backlog   prometheus.Gauge
	oldestAge prometheus.Gauge
	relayed   prometheus.Counter
	errors    prometheus.Counter
	leader    prometheus.Gauge
}

func newRelayMetrics(reg prometheus.Registerer, name string) (*relayMetrics, error) {
	labels := prometheus.Labels{"outbox": name}
	m := &relayMetrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ficus_outbox_backlog", Help: "Outbox rows not yet published.", ConstLabels: labels,
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ficus_outbox_oldest_age_seconds", Help: "Age of the oldest unpublished outbox row.", ConstLabels: labels,
		}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ficus_outbox_relayed_total", Help: "Outbox rows published and marked sent.", ConstLabels: labels,
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ficus_outbox_relay_errors_total", Help: "Relay rounds that failed and were retried.", ConstLabels: labels,
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ficus_outbox_lease_held", Help: "1 while this relay holds the outbox lease.", ConstLabels: labels,
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.backlog = metrics.Register(reg, m.backlog, &err)
	m.oldestAge = metrics.Register(reg, m.oldestAge, &err)
	m.relayed = metrics.Register(reg, m.relayed, &err)
	m.errors = metrics.Register(reg, m.errors, &err)
	m.leader = metrics.Register(reg, m.leader, &err)
	if err != nil {
		return m, fmt.Errorf("registering outbox metrics: %w", err)
	}
	return m, nil
}
