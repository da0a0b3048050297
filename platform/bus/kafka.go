package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/event"
)

// The Kafka bus keeps every event in one topic, named like the NATS stream (EventsStream),
// keyed by the event's subject, its aggregate id, so that the events of one aggregate land on
// one partition and keep their order. Its dead letters go to a second topic (DLQStream) of one
// partition. Each durable consumer is a consumer group, "ficus-" and its name, whose offsets
// are committed only once the events before them were handled (the handler returned, so the
// inbox row is written) or dead-lettered.

// Kafka record headers, beyond those the NATS bus sets too (HeaderID, HeaderType,
// HeaderSubject and the dead-letter ones).
const (
	// HeaderReplayTo names the only consumer a replayed dead letter is for.
	HeaderReplayTo = "Ficus-Replay-To"
	// HeaderReplayed marks a record of the dead-letter topic that says the dead letter whose
	// sequence it holds was replayed: Kafka cannot delete one record.
	HeaderReplayed = "Ficus-Replayed"
)

// groupPrefix starts the consumer group of every durable consumer, so that Ficus's groups
// stand apart from other applications' on a shared cluster.
const groupPrefix = "ficus-"

// kafkaBus is the bus on Kafka.
type kafkaBus struct {
	cfg     config.Events
	opts    Options
	metrics *metrics
	base    []kgo.Opt // what every client of this bus is built with
	cl      *kgo.Client
	adm     *kadm.Client
	reach   *reachability
	// life ends when Close is called: every consumer and reader polls with it, and closes
	// its own client on its way out. (Closing a group member's client from Close could
	// wait for a rebalance that waits for the very handler calling Close.)
	life  context.Context
	close context.CancelFunc
}

// connectKafka connects to the Kafka cluster cfg names and creates or updates its topics.
func connectKafka(ctx context.Context, cfg config.Events, opts Options, m *metrics) (*kafkaBus, error) {
	brokers := cfg.KafkaBrokers()
	reach := &reachability{waiters: map[int]func(){}}
	base := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(opts.Name),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(opts.ReconnectWait*time.Duration(1<<min(tries, 4)), 2*time.Second)
		}),
	}
	// The producer is idempotent (franz-go's default, with acks from all in-sync replicas):
	// its own retries never store a record twice or out of order.
	cl, err := kgo.NewClient(append(base,
		kgo.WithHooks(reach),
		kgo.RecordDeliveryTimeout(opts.PublishTimeout),
		kgo.MaxBufferedRecords(opts.MaxPendingPublishes),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to bus %s: %w", config.Redact(cfg.Bus), err)
	}
	life, closeBus := context.WithCancel(context.Background())
	k := &kafkaBus{cfg: cfg, opts: opts, metrics: m, base: base, cl: cl, adm: kadm.NewClient(cl), reach: reach, life: life, close: closeBus}
	wait := 50 * time.Millisecond
	for {
		err := k.ensureTopics(ctx)
		if err == nil {
			return k, nil
		}
		opts.Logger.Debug("bus not ready", "err", err)
		select {
		case <-ctx.Done():
			cl.Close()
			return nil, fmt.Errorf("connecting to bus %s: %w (last error: %v)", config.Redact(cfg.Bus), ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// topicConfigs returns the settings of the events and dead-letter topics: their retention
// from events.stream and events.dead_letters, split over the partitions (Kafka bounds the
// bytes of each partition), and their partitions and replicas.
func topicConfigs(cfg config.Events) []topicConfig {
	events, dlq := cfg.Stream, cfg.DeadLetters
	events.EventsStreamDefaults()
	dlq.DeadLettersDefaults()
	parts := cfg.KafkaPartitions()
	replicas := cfg.StreamReplicas()
	conf := func(l config.StreamLimits, parts int) map[string]string {
		c := map[string]string{
			"cleanup.policy":  "delete",
			"retention.ms":    strconv.FormatInt(l.MaxAge.D().Milliseconds(), 10),
			"retention.bytes": strconv.FormatInt(int64(l.MaxBytes)/int64(parts), 10),
		}
		if replicas >= 3 {
			// With acks from all in-sync replicas, a record is then on two brokers at least
			// before it counts as stored.
			c["min.insync.replicas"] = "2"
		}
		return c
	}
	return []topicConfig{
		{name: EventsStream, partitions: parts, replicas: replicas, configs: conf(events, parts)},
		{name: DLQStream, partitions: 1, replicas: replicas, configs: conf(dlq, 1)},
	}
}

type topicConfig struct {
	name                 string
	partitions, replicas int
	configs              map[string]string
}

// ensureTopics creates the topics, or sets the retention of existing ones to what cfg says:
// every process that connects applies the limits of its config.yaml, so they must all
// agree. An existing topic keeps its partitions and replicas.
func (k *kafkaBus) ensureTopics(ctx context.Context) error {
	for _, t := range topicConfigs(k.cfg) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := k.ensureTopic(cctx, t)
		cancel()
		if err != nil {
			return fmt.Errorf("creating topic %s: %w", t.name, err)
		}
	}
	return nil
}

func (k *kafkaBus) ensureTopic(ctx context.Context, t topicConfig) error {
	configs := map[string]*string{}
	var alter []kadm.AlterConfig
	for name, v := range t.configs {
		configs[name] = kadm.StringPtr(v)
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: name, Value: kadm.StringPtr(v)})
	}
	res, err := k.adm.CreateTopics(ctx, int32(t.partitions), int16(t.replicas), configs, t.name)
	if err != nil {
		return err
	}
	r, err := res.On(t.name, nil)
	if err != nil {
		return err
	}
	switch {
	case r.Err == nil:
		return nil
	case !errors.Is(r.Err, kerr.TopicAlreadyExists):
		return fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
	}
	ares, err := k.adm.AlterTopicConfigs(ctx, alter, t.name)
	if err != nil {
		return err
	}
	for _, a := range ares {
		if a.Err != nil {
			return fmt.Errorf("setting its retention: %w: %s", a.Err, a.ErrMessage)
		}
	}
	return nil
}

// Close ends every Consume, Read and Tail running on the bus (Consume with an error) and
// closes the producer. Offsets of events handled but not committed yet are not committed.
func (k *kafkaBus) Close() {
	k.close()
	k.cl.Close()
}

// newClient builds a client of this bus with opts added, for one consumer or reader, and a
// context that ends with ctx or when the bus is closed, to poll with.
func (k *kafkaBus) newClient(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, context.Context, func(), error) {
	if k.life.Err() != nil {
		return nil, nil, nil, kgo.ErrClientClosed
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, k.base...), opts...)...)
	if err != nil {
		return nil, nil, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(k.life, cancel)
	return cl, pctx, func() {
		stop()
		cancel()
		cl.Close()
	}, nil
}

// record encodes e as the record that carries it on topic.
func eventRecord(topic string, e event.Event) (*kgo.Record, error) {
	if _, err := Subject(e.Type); err != nil {
		return nil, fmt.Errorf("publishing event %s: %w", e.ID, err)
	}
	if e.ID == "" {
		return nil, fmt.Errorf("publishing %s event: empty id", e.Type)
	}
	body, err := marshalEvent(e)
	if err != nil {
		return nil, err
	}
	key := e.Subject
	if key == "" {
		key = e.ID
	}
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: body}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderID, Value: []byte(e.ID)}, kgo.RecordHeader{Key: HeaderType, Value: []byte(e.Type)})
	if e.Subject != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderSubject, Value: []byte(e.Subject)})
	}
	return r, nil
}

// header returns the value of the record header key, or "".
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Publish publishes evs, in order, keyed by their subjects, and waits until Kafka has stored
// every one of them. The records are sent pipelined. Unlike JetStream, Kafka keeps a record
// published again (by a relay that died before marking it sent) a second time: consumers'
// inboxes drop it. When a broker it needs cannot be reached, the publish fails at the first
// failed connection attempt instead of after PublishTimeout.
func (k *kafkaBus) Publish(ctx context.Context, evs ...event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		r, err := eventRecord(EventsStream, e)
		if err != nil {
			k.metrics.publishErrors.Inc()
			return err
		}
		recs = append(recs, r)
	}
	pctx, cancel := context.WithTimeout(ctx, k.opts.PublishTimeout)
	defer cancel()
	var mu sync.Mutex
	unreachable := false
	var pubErr error
	stop := k.reach.onDown(func() { unreachable = true; cancel() })
	defer stop()
	left := len(recs)
	all := make(chan struct{})
	for _, r := range recs {
		k.cl.Produce(pctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				k.metrics.published.Inc()
			} else if pubErr == nil {
				pubErr = fmt.Errorf("publishing event %s: %w", header(r, HeaderID), err)
			}
			if left--; left == 0 {
				close(all)
			}
		})
	}
	// Records sent to a broker that died before answering cannot be failed by the producer
	// (it cannot know whether they were stored): it keeps them and sends them when the
	// broker is back. Publish does not wait for that; the caller publishes them again and
	// consumers drop the copy.
	select {
	case <-all:
	case <-pctx.Done():
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if pubErr == nil && left > 0 {
		switch {
		case ctx.Err() != nil:
			pubErr = fmt.Errorf("publishing %d events: %w", len(evs), ctx.Err())
		case unreachable:
			pubErr = fmt.Errorf("publishing %d events: a Kafka broker could not be reached", len(evs))
		default:
			pubErr = fmt.Errorf("publishing %d events: no acknowledgement within %s", len(evs), k.opts.PublishTimeout)
		}
	}
	if pubErr != nil {
		k.metrics.publishErrors.Inc()
		return pubErr
	}
	return nil
}

// reachability follows the producer's connection attempts to tell when a broker it needs
// cannot be reached: the producer dials a broker when it has records for it and no
// connection, so a failed attempt means records wait for a broker that is down. It is a kgo
// hook.
type reachability struct {
	mu      sync.Mutex
	next    int
	waiters map[int]func()
}

var _ kgo.HookBrokerConnect = (*reachability)(nil)

func (r *reachability) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, fn := range r.waiters {
		delete(r.waiters, id)
		fn()
	}
}

// onDown calls fn, once, at the next failed connection attempt, unless the returned stop is
// called first. fn runs with r's lock held: it must not call r.
func (r *reachability) onDown(fn func()) (stop func()) {
	r.mu.Lock()
	id := r.next
	r.next++
	r.waiters[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.waiters, id)
		r.mu.Unlock()
	}
}
