package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ficus-project/ficus/platform/event"
)

// EnsureConsumer checks name and opts. A consumer group needs nothing made in advance: one
// without committed offsets starts at the oldest event the topic keeps, so it receives the
// events published before it first ran, as a JetStream consumer created up front does.
func (k *kafkaBus) EnsureConsumer(_ context.Context, name string, opts ConsumerOptions) error {
	_, err := consumerFilter(name, opts)
	return err
}

// consumerFilter returns the set of event types consumer name takes (nil: every type).
func consumerFilter(name string, opts ConsumerOptions) (map[string]bool, error) {
	if !validName(name) {
		return nil, fmt.Errorf("creating consumer %q: name must be letters, digits, - or _", name)
	}
	if len(opts.Types) == 0 {
		return nil, nil
	}
	types := map[string]bool{}
	for _, t := range opts.Types {
		if _, err := Subject(t); err != nil {
			return nil, fmt.Errorf("creating consumer %s: %w", name, err)
		}
		types[t] = true
	}
	return types, nil
}

// Consume runs consumer group "ficus-"+name until ctx is done. Records are handed out to
// opts.Concurrency lanes by key, so the events of one aggregate are handled one at a time and
// in order, even when retried: a failing event is retried in place after its backoff, holding
// up the events behind it in its lane, until it succeeds or is dead-lettered. A polled batch
// is handled completely before the next poll, and only then are its offsets committed: an
// offset is never committed before its event's handler returned nil or the event was parked
// in the dead-letter topic. A consumer killed before a commit gets the events again, and its
// inbox drops those it had applied.
func (k *kafkaBus) Consume(ctx context.Context, name string, h Handler, opts ConsumerOptions) error {
	return k.consume(ctx, name, &kconsumer{h: h}, opts)
}

// ConsumeBatch is Consume handing each lane's run of events, up to opts.BatchSize, to h at
// once; on error each event of the run goes to h again alone.
func (k *kafkaBus) ConsumeBatch(ctx context.Context, name string, h BatchHandler, opts ConsumerOptions) error {
	single := func(ctx context.Context, e event.Event) error { return h(ctx, []event.Event{e}) }
	return k.consume(ctx, name, &kconsumer{h: single, batch: h}, opts)
}

func (k *kafkaBus) consume(ctx context.Context, name string, c *kconsumer, opts ConsumerOptions) error {
	opts.setDefaults()
	types, err := consumerFilter(name, opts)
	if err != nil {
		return err
	}
	cl, pctx, closeClient, err := k.newClient(ctx,
		kgo.ConsumerGroup(groupPrefix+name),
		kgo.ConsumeTopics(EventsStream),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Partitions move to another member only between two polls, once this one's batch is
		// handled and committed.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		// A member killed without leaving holds its partitions until the group gives up on
		// it: 10s rather than Kafka's 45s, so that a restarted consumer resumes soon.
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
	)
	if err != nil {
		return fmt.Errorf("consuming %s: %w", name, err)
	}
	defer func() {
		cl.AllowRebalance()
		closeClient()
	}()
	c.k, c.name, c.opts, c.types, c.log = k, name, opts, types, opts.Logger.With("consumer", name)
	for {
		fetches := cl.PollRecords(pctx, min(opts.MaxAckPending, 500))
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		if k.life.Err() != nil || fetches.IsClientClosed() {
			return fmt.Errorf("consuming %s: %w", name, kgo.ErrClientClosed)
		}
		fetches.EachError(func(t string, p int32, err error) {
			c.log.Debug("fetching", "topic", t, "partition", p, "err", err)
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			// Handlers run until ctx ends or the bus is closed: a closed bus is a consumer
			// going away, whose unsettled events the group's next member gets.
			c.handle(pctx, cl, recs)
		}
		cl.AllowRebalance()
		if len(recs) == 0 && len(fetches.Errors()) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// kconsumer handles the records of one Consume call.
type kconsumer struct {
	k     *kafkaBus
	name  string
	h     Handler
	batch BatchHandler
	opts  ConsumerOptions
	types map[string]bool
	log   *slog.Logger
}

// outcome is what became of one record.
type outcome int

const (
	pending outcome = iota // not settled: its offset must not be committed
	skipped                // not for this consumer
	handled                // the handler returned nil
	parked                 // dead-lettered
)

// job is one record and what became of it.
type job struct {
	rec *kgo.Record
	ev  event.Event
	out outcome
}

// handle handles recs in lanes, then commits the offsets of what was settled.
func (c *kconsumer) handle(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	lanes := make([][]*job, c.opts.Concurrency)
	jobs := make([]*job, len(recs))
	for i, r := range recs {
		j := &job{rec: r}
		jobs[i] = j
		h := fnv.New32a()
		h.Write(r.Key)
		lane := int(h.Sum32() % uint32(len(lanes)))
		lanes[lane] = append(lanes[lane], j)
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) > 0 {
			wg.Go(func() { c.runLane(ctx, lane) })
		}
	}
	wg.Wait()
	c.commit(ctx, cl, jobs)
}

// runLane handles the jobs of one lane in order; it stops at the first it cannot settle
// (ctx ended).
func (c *kconsumer) runLane(ctx context.Context, lane []*job) {
	for i := 0; i < len(lane); {
		if ctx.Err() != nil || c.k.life.Err() != nil {
			return // no handler call is worth making for a consumer going away
		}
		j := lane[i]
		if !c.wants(j) {
			j.out = skipped
			i++
			continue
		}
		if c.batch != nil {
			run := []*job{}
			for n := i; n < len(lane) && len(run) < c.opts.BatchSize; n++ {
				if !c.wants(lane[n]) {
					break
				}
				run = append(run, lane[n])
			}
			if len(run) > 1 {
				if !c.processBatch(ctx, run) {
					// One by one, so that only a failing event is retried and dead-lettered.
					for _, j := range run {
						c.process(ctx, j)
						if j.out == pending {
							return
						}
					}
				}
				i += len(run)
				continue
			}
		}
		c.process(ctx, j)
		if j.out == pending {
			return
		}
		i++
	}
}

// wants reports whether j's record is for this consumer, decoding its event when it is.
// Records that are not events are: they are dead-lettered.
func (c *kconsumer) wants(j *job) bool {
	if to := header(j.rec, HeaderReplayTo); to != "" && to != c.name {
		return false
	}
	if c.types != nil && !c.types[header(j.rec, HeaderType)] {
		return false
	}
	return true
}

// processBatch hands run to the batch handler at once and reports whether it succeeded.
func (c *kconsumer) processBatch(ctx context.Context, run []*job) bool {
	evs := make([]event.Event, 0, len(run))
	for _, j := range run {
		e, err := unmarshalEvent(j.rec.Value)
		if err != nil {
			return false // process dead-letters it
		}
		j.ev = e
		evs = append(evs, e)
	}
	hctx, cancel := context.WithTimeout(ctx, c.opts.AckWait)
	err := callBatch(hctx, c.batch, evs)
	cancel()
	if err != nil {
		c.log.Debug("batch failed, handling its events one by one", "events", len(evs), "err", err)
		return false
	}
	for _, j := range run {
		j.out = handled
	}
	return true
}

// process handles one job: retried in place with backoff until it succeeds, fails for the
// last time (dead-lettered) or ctx ends (left pending).
func (c *kconsumer) process(ctx context.Context, j *job) {
	m := c.k.metrics
	e, err := unmarshalEvent(j.rec.Value)
	if err != nil {
		c.deadLetter(ctx, j, 1, err)
		return
	}
	j.ev = e
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			m.redelivered.WithLabelValues(c.name).Inc()
		}
		hctx, cancel := context.WithTimeout(ctx, c.opts.AckWait)
		err := callHandler(hctx, c.h, e)
		cancel()
		if err == nil {
			j.out = handled
			return
		}
		if ctx.Err() != nil {
			return
		}
		m.failed.WithLabelValues(c.name).Inc()
		var p permanent
		if errors.As(err, &p) || attempt >= c.opts.MaxAttempts {
			c.deadLetter(ctx, j, attempt, err)
			return
		}
		delay := c.opts.Backoff(attempt)
		c.log.Warn("handler failed, will retry", "event", e.ID, "type", e.Type, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// deadLetter parks j's record in the dead-letter topic with cause, retrying until it is
// stored or ctx ends: a record is never dropped.
func (c *kconsumer) deadLetter(ctx context.Context, j *job, attempts int, cause error) {
	r := j.rec
	typ := header(r, HeaderType)
	if checkTokens(typ) != nil {
		typ = "unknown"
	}
	dl := &kgo.Record{Topic: DLQStream, Key: []byte(c.name), Value: r.Value}
	for _, h := range []string{HeaderID, HeaderType, HeaderSubject} {
		if v := header(r, h); v != "" {
			dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: h, Value: []byte(v)})
		}
	}
	for k, v := range map[string]string{
		HeaderError:       headerValue(cause.Error()),
		HeaderConsumer:    c.name,
		HeaderAttempts:    strconv.Itoa(attempts),
		HeaderFailedAt:    time.Now().UTC().Format(time.RFC3339Nano),
		HeaderOrigSubject: EventsPrefix + typ,
		HeaderOrigSeq:     fmt.Sprintf("%d/%d", r.Partition, r.Offset),
	} {
		dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	for try := 1; ; try++ {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := c.k.cl.ProduceSync(pctx, dl).FirstErr()
		cancel()
		if err == nil {
			j.out = parked
			c.log.Error("event dead-lettered", "event", header(r, HeaderID), "type", typ, "attempts", attempts, "err", cause)
			return
		}
		c.log.Error("dead-lettering failed, will retry", "event", header(r, HeaderID), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.opts.Backoff(try)):
		}
	}
}

// commit commits, per partition, the offsets of the settled records before the first
// unsettled one, and then counts what those records became.
func (c *kconsumer) commit(ctx context.Context, cl *kgo.Client, jobs []*job) {
	blocked := map[int32]bool{}
	var done []*job
	for _, j := range jobs { // in offset order within each partition
		if blocked[j.rec.Partition] || j.out == pending {
			blocked[j.rec.Partition] = true
			continue
		}
		done = append(done, j)
	}
	if len(done) == 0 {
		return
	}
	recs := make([]*kgo.Record, len(done))
	for i, j := range done {
		recs[i] = j.rec
	}
	err := kgo.ErrClientClosed // the bus was closed under the handlers: the process died
	if c.k.life.Err() == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = cl.CommitRecords(cctx, recs...)
		cancel()
	}
	m := c.k.metrics
	now := time.Now()
	for _, j := range done {
		switch {
		case j.out == skipped:
		case err != nil:
			m.ackErrors.WithLabelValues(c.name).Inc()
		case j.out == handled:
			m.consumed.WithLabelValues(c.name).Inc()
			m.lag.WithLabelValues(c.name).Observe(now.Sub(j.ev.Time).Seconds())
		case j.out == parked:
			m.deadLettered.WithLabelValues(c.name).Inc()
		}
	}
	if err != nil {
		c.log.Debug("offsets not committed; the events will be delivered again", "err", err)
	}
}

// callHandler runs h, turning a panic into an error so one bad message cannot take the
// consumer down.
func callHandler(ctx context.Context, h Handler, e event.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, e)
}

// callBatch runs h, turning a panic into an error.
func callBatch(ctx context.Context, h BatchHandler, evs []event.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, slices.Clip(evs))
}
