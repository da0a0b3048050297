package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Retention says how long Ficus keeps the rows it records for itself (not business data): every
// one of these tables is pruned, so none grows without limit. See docs/events.md.
type Retention struct {
	// Idempotency is how long an Idempotency-Key's stored response is replayed, counted from
	// the key's first request; after it the key is forgotten and a repeat runs again. Claims
	// still in flight are never pruned. Default 24h.
	Idempotency Duration `yaml:"idempotency" json:"idempotency"`
	// Outbox is how long published outbox rows are kept after the bus stored them; rows not
	// yet published are never pruned. Default 24h.
	Outbox Duration `yaml:"outbox" json:"outbox"`
	// Inbox is how long a consumer remembers the id of an event it applied. An event can be
	// delivered again for as long as the events stream keeps it, so this must be at least
	// events.stream.max_age. Default: events.stream.max_age plus 24h.
	Inbox Duration `yaml:"inbox" json:"inbox"`
	// Interval is how often each database is pruned. Default 1m.
	Interval Duration `yaml:"interval" json:"interval"`
	// Batch is the most rows one delete statement removes: each batch is its own short write
	// transaction, so pruning a large backlog never holds the database's write turn for long.
	// Default 1000, at most 100000.
	Batch int `yaml:"batch" json:"batch"`
	// MaxBatches is the most batches per table in one round; a table with more to prune is
	// pruned again a second later rather than after Interval. Default 10.
	MaxBatches int `yaml:"max_batches" json:"max_batches"`
}

// StreamLimits bound a JetStream stream. When either limit is reached, JetStream removes the
// oldest messages to make room (its DiscardOld policy): publishing never fails for lack of
// room, and a consumer stopped for longer than the limits allow misses what was removed.
type StreamLimits struct {
	// MaxAge is how long a message is kept. Default 168h (7 days) for events, 720h (30 days)
	// for dead letters. At least 2m, the duplicate window.
	MaxAge Duration `yaml:"max_age" json:"max_age"`
	// MaxBytes is the most the stream stores, written as 512MiB, 1GiB or 100MB. Default
	// 1GiB for events, 256MiB for dead letters. At least 1MiB.
	MaxBytes ByteSize `yaml:"max_bytes" json:"max_bytes"`
}

// Retention defaults and bounds.
const (
	DefaultIdempotencyRetention = 24 * time.Hour
	DefaultOutboxRetention      = 24 * time.Hour
	DefaultPruneInterval        = time.Minute
	DefaultPruneBatch           = 1000
	DefaultPruneMaxBatches      = 10
	DefaultEventsMaxAge         = 7 * 24 * time.Hour
	DefaultEventsMaxBytes       = ByteSize(1 << 30)
	DefaultDeadLettersMaxAge    = 30 * 24 * time.Hour
	DefaultDeadLettersMaxBytes  = ByteSize(256 << 20)
	// DuplicateWindow is how long JetStream remembers a message id to drop a re-published
	// duplicate; a stream must keep messages at least this long.
	DuplicateWindow = 2 * time.Minute
	// inboxMargin is what the default inbox retention adds to the stream's max_age, for
	// redeliveries of a message read just before it expired and clocks that disagree.
	inboxMargin  = 24 * time.Hour
	maxBatch     = 100000
	minStreamMax = ByteSize(1 << 20)
)

// setDefaults fills the unset limits of a stream.
func (s *StreamLimits) setDefaults(age time.Duration, bytes ByteSize) {
	if s.MaxAge == 0 {
		s.MaxAge = Duration(age)
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = bytes
	}
}

// EventsStreamDefaults fills the unset limits of the events stream (events.stream).
func (s *StreamLimits) EventsStreamDefaults() {
	s.setDefaults(DefaultEventsMaxAge, DefaultEventsMaxBytes)
}

// DeadLettersDefaults fills the unset limits of the dead-letter stream (events.dead_letters).
func (s *StreamLimits) DeadLettersDefaults() {
	s.setDefaults(DefaultDeadLettersMaxAge, DefaultDeadLettersMaxBytes)
}

// setRetentionDefaults fills the retention: and events.stream/dead_letters settings.
func (c *Config) setRetentionDefaults() {
	c.Events.Stream.EventsStreamDefaults()
	c.Events.DeadLetters.DeadLettersDefaults()
	r := &c.Retention
	if r.Idempotency == 0 {
		r.Idempotency = Duration(DefaultIdempotencyRetention)
	}
	if r.Outbox == 0 {
		r.Outbox = Duration(DefaultOutboxRetention)
	}
	if r.Inbox == 0 {
		r.Inbox = c.Events.Stream.MaxAge + Duration(inboxMargin)
	}
	if r.Interval == 0 {
		r.Interval = Duration(DefaultPruneInterval)
	}
	if r.Batch == 0 {
		r.Batch = DefaultPruneBatch
	}
	if r.MaxBatches == 0 {
		r.MaxBatches = DefaultPruneMaxBatches
	}
}

// validateRetention checks the retention: and events.stream/dead_letters settings.
func (p *parser) validateRetention(c *Config) {
	check := func(field string, ok bool, format string, args ...any) {
		if !ok && !p.broken[field] {
			p.add(field, fmt.Sprintf(format, args...))
		}
	}
	streams := []struct {
		field  string
		limits StreamLimits
	}{{"events.stream", c.Events.Stream}, {"events.dead_letters", c.Events.DeadLetters}}
	for _, s := range streams {
		check(s.field+".max_age", s.limits.MaxAge.D() >= DuplicateWindow, "must be at least %s (the duplicate window), got %s", DuplicateWindow, s.limits.MaxAge)
		check(s.field+".max_bytes", s.limits.MaxBytes >= minStreamMax, "must be at least %s, got %s", minStreamMax, s.limits.MaxBytes)
	}
	r := c.Retention
	check("retention.inbox", r.Inbox >= c.Events.Stream.MaxAge,
		"must be at least events.stream.max_age (%s): an event can be delivered again for as long as the stream keeps it, got %s",
		c.Events.Stream.MaxAge, r.Inbox)
	check("retention.interval", r.Interval.D() >= time.Second, "must be at least 1s, got %s", r.Interval)
	check("retention.batch", r.Batch >= 1 && r.Batch <= maxBatch, "must be between 1 and %d, got %d", maxBatch, r.Batch)
	check("retention.max_batches", r.MaxBatches >= 1 && r.MaxBatches <= 1000, "must be between 1 and 1000, got %d", r.MaxBatches)
}

// ByteSize is a size in bytes written as "512MiB", "1GiB", "100MB" or a plain number of bytes
// in YAML.
type ByteSize int64

// byteUnits are the suffixes ByteSize accepts, longest first so "MiB" is not read as "B".
var byteUnits = []struct {
	suffix string
	size   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize parses a size such as "512MiB", "1 GiB", "100MB" or "4096".
func ParseByteSize(s string) (ByteSize, error) {
	text := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(text, u.suffix) {
			text, mult = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.size
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 512MiB, 1GiB, 100MB)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n * mult), nil
}

// String writes b with the largest binary unit that divides it ("512MiB"), else in bytes.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML parses a size. Errors are yaml.TypeErrors so decoding goes on and every problem
// in the file is reported at once.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{"expects a size such as 512MiB, 1GiB or 100MB"}}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{err.Error()}}
	}
	*b = v
	return nil
}

// MarshalYAML writes b as a string.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalText writes b as a string (JSON on the admin API).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText reads a size as MarshalText writes it (what admin API clients decode).
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
