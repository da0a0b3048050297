package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ficus-project/ficus/platform/event"
)

// ErrNoTotalOrder is returned by Position, LastOf and Read on a Kafka events topic of several
// partitions: a sequence number orders the events of one partition only.
var ErrNoTotalOrder = errors.New("the Kafka events topic has several partitions, so its events have no single sequence; reading by position needs events.kafka.partitions: 1")

// offsets returns the start and end offsets of every partition of topic.
func (k *kafkaBus) offsets(ctx context.Context, topic string) (start, end map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	get := func(list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		l, err := list(ctx, topic)
		if err != nil {
			return nil, err
		}
		out := map[int32]int64{}
		var ferr error
		l.Each(func(o kadm.ListedOffset) {
			if o.Err != nil && ferr == nil {
				ferr = o.Err
			}
			out[o.Partition] = o.Offset
		})
		if ferr == nil && len(out) == 0 {
			ferr = fmt.Errorf("topic %s has no partitions", topic)
		}
		return out, ferr
	}
	if start, err = get(k.adm.ListStartOffsets); err != nil {
		return nil, nil, fmt.Errorf("reading the offsets of %s: %w", topic, err)
	}
	if end, err = get(k.adm.ListEndOffsets); err != nil {
		return nil, nil, fmt.Errorf("reading the offsets of %s: %w", topic, err)
	}
	return start, end, nil
}

// readPartition calls fn with the records of topic's partition from offset from up to, not
// including, offset to, oldest first; records the topic no longer keeps are skipped.
func (k *kafkaBus) readPartition(ctx context.Context, topic string, partition int32, from, to int64, fn func(*kgo.Record) error) error {
	if from >= to {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, ctx, closeClient, err := k.newClient(ctx,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return fmt.Errorf("reading %s: %w", topic, err)
	}
	defer closeClient()
	for {
		fetches := cl.PollRecords(ctx, 1000)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		if fetches.IsClientClosed() {
			return fmt.Errorf("reading %s: %w", topic, kgo.ErrClientClosed)
		}
		for _, r := range fetches.Records() {
			if r.Offset >= to {
				return nil
			}
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset == to-1 {
				return nil
			}
		}
	}
}

// Backlog returns how many records of the events topic group "ficus-"+name has not
// committed yet, over all partitions: zero means it has handled everything published.
func (k *kafkaBus) Backlog(ctx context.Context, name string) (uint64, error) {
	start, end, err := k.offsets(ctx, EventsStream)
	if err != nil {
		return 0, fmt.Errorf("measuring the backlog of consumer %s: %w", name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	committed, err := k.adm.FetchOffsets(cctx, groupPrefix+name)
	if err != nil {
		return 0, fmt.Errorf("measuring the backlog of consumer %s: %w", name, err)
	}
	var n uint64
	for p, e := range end {
		from := start[p]
		if o, ok := committed.Lookup(EventsStream, p); ok && o.Err == nil && o.At >= 0 {
			from = max(from, o.At)
		}
		n += uint64(max(e-from, 0))
	}
	return n, nil
}

// dlqEntries reads the dead-letter topic: the dead letters still standing, oldest first,
// without the replayed ones and without copies (a consumer that died between parking a
// record and committing its offset parks it again).
func (k *kafkaBus) dlqEntries(ctx context.Context) ([]DeadLetter, error) {
	start, end, err := k.offsets(ctx, DLQStream)
	if err != nil {
		return nil, err
	}
	var all []DeadLetter
	replayed := map[uint64]bool{}
	seen := map[string]bool{}
	err = k.readPartition(ctx, DLQStream, 0, start[0], end[0], func(r *kgo.Record) error {
		if s := header(r, HeaderReplayed); s != "" {
			if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
				replayed[seq] = true
			}
			return nil
		}
		// One dead letter per consumer and event record.
		key := header(r, HeaderConsumer) + " " + header(r, HeaderOrigSeq)
		if seen[key] {
			return nil
		}
		seen[key] = true
		all = append(all, kafkaDeadLetter(r))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, d := range all {
		if !replayed[d.Seq] {
			out = append(out, d)
		}
	}
	return out, nil
}

func kafkaDeadLetter(r *kgo.Record) DeadLetter {
	d := DeadLetter{
		Seq:      uint64(r.Offset) + 1,
		Consumer: header(r, HeaderConsumer),
		Data:     r.Value,
		Error:    header(r, HeaderError),
		Subject:  header(r, HeaderOrigSubject),
	}
	d.Attempts, _ = strconv.Atoi(header(r, HeaderAttempts))
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, header(r, HeaderFailedAt))
	if e, err := unmarshalEvent(r.Value); err == nil {
		d.Event = e
	} else {
		d.Event.ID = header(r, HeaderID)
		d.Event.Type = header(r, HeaderType)
	}
	return d
}

// DeadLetters lists the dead-letter topic, oldest first. A dead letter's Seq is its offset
// in the topic plus one.
func (k *kafkaBus) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	out, err := k.dlqEntries(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	return out, nil
}

// Replay publishes the dead letter seq to the events topic again, marked for the consumer
// that gave up on it alone, then records in the dead-letter topic that it was replayed:
// Kafka cannot remove one record, so the listing leaves it out from then on. Replaying it
// again fails as replaying a removed JetStream dead letter does.
func (k *kafkaBus) Replay(ctx context.Context, seq uint64) error {
	dls, err := k.dlqEntries(ctx)
	if err != nil {
		return fmt.Errorf("replaying dead letter %d: %w", seq, err)
	}
	var d *DeadLetter
	for i := range dls {
		if dls[i].Seq == seq {
			d = &dls[i]
		}
	}
	if d == nil {
		return fmt.Errorf("replaying dead letter %d: no such dead letter (replayed already, or past the topic's retention)", seq)
	}
	if !validName(d.Consumer) {
		return fmt.Errorf("replaying dead letter %d: no valid consumer header", seq)
	}
	key := d.Event.Subject
	if key == "" {
		key = d.Event.ID
	}
	r := &kgo.Record{Topic: EventsStream, Key: []byte(key), Value: d.Data, Headers: []kgo.RecordHeader{
		{Key: HeaderReplayTo, Value: []byte(d.Consumer)},
		{Key: HeaderID, Value: []byte(d.Event.ID)},
		{Key: HeaderType, Value: []byte(d.Event.Type)},
	}}
	if d.Event.Subject != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderSubject, Value: []byte(d.Event.Subject)})
	}
	pctx, cancel := context.WithTimeout(ctx, k.opts.PublishTimeout)
	defer cancel()
	if err := k.cl.ProduceSync(pctx, r).FirstErr(); err != nil {
		return fmt.Errorf("replaying dead letter %d: %w", seq, err)
	}
	mark := &kgo.Record{Topic: DLQStream, Key: []byte(d.Consumer), Headers: []kgo.RecordHeader{
		{Key: HeaderReplayed, Value: []byte(strconv.FormatUint(seq, 10))},
	}}
	if err := k.cl.ProduceSync(pctx, mark).FirstErr(); err != nil {
		return fmt.Errorf("replaying dead letter %d: removing it: %w", seq, err)
	}
	k.metrics.replayed.Inc()
	return nil
}

// single returns the start and end offsets of the events topic's one partition, or
// ErrNoTotalOrder.
func (k *kafkaBus) single(ctx context.Context) (start, end int64, err error) {
	s, e, err := k.offsets(ctx, EventsStream)
	if err != nil {
		return 0, 0, err
	}
	if len(e) != 1 {
		return 0, 0, ErrNoTotalOrder
	}
	return s[0], e[0], nil
}

// Position reads where the events topic stands: an event's sequence is its offset plus one.
func (k *kafkaBus) Position(ctx context.Context) (Position, error) {
	start, end, err := k.single(ctx)
	if err != nil {
		return Position{}, fmt.Errorf("reading topic %s: %w", EventsStream, err)
	}
	if end == 0 {
		return Position{}, nil
	}
	return Position{First: uint64(start) + 1, Last: uint64(end)}, nil
}

// LastOf returns the sequence of the newest event of any of types the topic holds. Kafka
// keeps no index by type, so it reads back from the newest record, a window at a time.
func (k *kafkaBus) LastOf(ctx context.Context, types []string) (uint64, error) {
	want := map[string]bool{}
	for _, t := range types {
		if _, err := Subject(t); err != nil {
			return 0, err
		}
		want[t] = true
	}
	start, end, err := k.single(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading topic %s: %w", EventsStream, err)
	}
	const window = 1000
	for to := end; to > start; to -= window {
		from := max(start, to-window)
		var last uint64
		err := k.readPartition(ctx, EventsStream, 0, from, to, func(r *kgo.Record) error {
			if header(r, HeaderReplayTo) == "" && want[header(r, HeaderType)] {
				last = uint64(r.Offset) + 1
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("reading the last %v event: %w", types, err)
		}
		if last > 0 {
			return last, nil
		}
	}
	return 0, nil
}

// Read calls fn with the events stored after sequence after (offset after onwards), as
// natsBus.Read does. It needs a topic of one partition.
func (k *kafkaBus) Read(ctx context.Context, after uint64, opts ReadOptions, fn func(ctx context.Context, batch []Stored) error) error {
	opts.setDefaults()
	want := map[string]bool{}
	for _, t := range opts.Types {
		if _, err := Subject(t); err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		want[t] = true
	}
	if _, _, err := k.single(ctx); err != nil {
		return fmt.Errorf("reading events after %d: %w", after, err)
	}
	cl, rctx, closeClient, err := k.newClient(ctx,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{EventsStream: {0: kgo.NewOffset().At(int64(after))}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(opts.Idle),
	)
	if err != nil {
		return fmt.Errorf("reading events after %d: %w", after, err)
	}
	defer closeClient()
	batch := make([]Stored, 0, opts.BatchSize)
	flush := func() error {
		if err := fn(ctx, batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for {
		wait := opts.Idle
		if len(batch) > 0 {
			wait = opts.Linger
		}
		pctx, cancel := context.WithTimeout(rctx, wait)
		fetches := cl.PollRecords(pctx, opts.BatchSize-len(batch))
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if k.life.Err() != nil || fetches.IsClientClosed() {
			return fmt.Errorf("reading events: %w", kgo.ErrClientClosed)
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		for _, r := range recs {
			if header(r, HeaderReplayTo) != "" || (len(want) > 0 && !want[header(r, HeaderType)]) {
				continue
			}
			s := Stored{Seq: uint64(r.Offset) + 1}
			s.Event, s.Err = unmarshalEvent(r.Value)
			batch = append(batch, s)
		}
		if len(batch) >= opts.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// Tail calls fn with every event published from now on (from the oldest kept if all is
// set), over every partition, with a client of its own and no consumer group. A replayed dead
// letter comes with the subject it would have on NATS, ReplayPrefix and its consumer.
func (k *kafkaBus) Tail(ctx context.Context, all bool, fn func(e event.Event, subject string) error) error {
	from := kgo.NewOffset().AtEnd()
	if all {
		from = kgo.NewOffset().AtStart()
	}
	cl, tctx, closeClient, err := k.newClient(ctx, kgo.ConsumeTopics(EventsStream), kgo.ConsumeResetOffset(from))
	if err != nil {
		return fmt.Errorf("tailing events: %w", err)
	}
	defer closeClient()
	for {
		fetches := cl.PollFetches(tctx)
		if tctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		for _, r := range fetches.Records() {
			e, err := unmarshalEvent(r.Value)
			if err != nil {
				e = event.Event{ID: header(r, HeaderID), Type: header(r, HeaderType)}
			}
			// The subject a NATS bus would have carried it on, replays marked as there.
			subject := EventsPrefix + header(r, HeaderType)
			if to := header(r, HeaderReplayTo); to != "" {
				subject = ReplayPrefix + to + "." + header(r, HeaderType)
			}
			if err := fn(e, subject); err != nil {
				return err
			}
		}
	}
}

// Usage reports what the events and dead-letter topics hold against their retention: the
// records over every partition, and their size on the brokers, every copy counted.
func (k *kafkaBus) Usage(ctx context.Context) ([]Usage, error) {
	var out []Usage
	for _, t := range topicConfigs(k.cfg) {
		start, end, err := k.offsets(ctx, t.name)
		if err != nil {
			return nil, fmt.Errorf("reading topic %s: %w", t.name, err)
		}
		u := Usage{Stream: t.name}
		for p, e := range end {
			u.Msgs += uint64(max(e-start[p], 0))
		}
		rc, err := k.adm.DescribeTopicConfigs(ctx, t.name)
		if err != nil {
			return nil, fmt.Errorf("reading topic %s: %w", t.name, err)
		}
		for _, r := range rc {
			for _, c := range r.Configs {
				v, _ := strconv.ParseInt(c.MaybeValue(), 10, 64)
				switch c.Key {
				case "retention.bytes":
					u.MaxBytes = v * int64(len(end))
				case "retention.ms":
					u.MaxAge = time.Duration(v) * time.Millisecond
				}
			}
		}
		if dirs, err := k.adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{t.name: {}}); err == nil {
			dirs.Each(func(d kadm.DescribedLogDir) {
				d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
					if p.Topic == t.name && !p.IsFuture {
						u.Bytes += uint64(max(p.Size, 0))
					}
				})
			})
		}
		if u.Msgs > 0 {
			_ = k.readPartition(ctx, t.name, firstNonEmpty(start, end), start[firstNonEmpty(start, end)], start[firstNonEmpty(start, end)]+1, func(r *kgo.Record) error {
				u.Oldest = r.Timestamp
				return nil
			})
		}
		out = append(out, u)
	}
	return out, nil
}

// firstNonEmpty returns a partition that holds records.
func firstNonEmpty(start, end map[int32]int64) int32 {
	for p, e := range end {
		if e > start[p] {
			return p
		}
	}
	return 0
}
