package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Bus kinds, as BusKind names them.
const (
	BusEmbedded = "embedded"
	BusNATS     = "nats"
	BusKafka    = "kafka"
)

// Bounds of the events settings.
const (
	// MaxReplicas is the most copies of a stream JetStream keeps (its R5), and the bound
	// Ficus puts on Kafka's replication factor too.
	MaxReplicas = 5
	// MaxKafkaPartitions bounds events.kafka.partitions.
	MaxKafkaPartitions = 1024
)

// Kafka configures the topics of a Kafka bus (events.bus: kafka://…).
type Kafka struct {
	// Partitions is the number of partitions of the events topic, between 1 and 1024.
	// Default 1. Events of one aggregate always go to one partition (they are keyed by its
	// id), so they keep their order at any count; with 1 the whole topic has one order,
	// which reading the stream by position (ficus migrate sync) needs. Only a new topic
	// takes it: Kafka cannot take partitions away, and adding them moves keys.
	Partitions int `yaml:"partitions" json:"partitions"`
}

// BusKind says what Bus names: BusEmbedded, BusNATS or BusKafka ("" when it is none of
// them, which Parse reports).
func (e Events) BusKind() string {
	switch {
	case e.Bus == "" || e.Bus == BusEmbedded:
		return BusEmbedded
	case strings.HasPrefix(e.Bus, "kafka://"):
		return BusKafka
	case strings.HasPrefix(e.Bus, "nats://") || strings.HasPrefix(e.Bus, "tls://"):
		return BusNATS
	}
	return ""
}

// Servers returns the servers Bus lists: one address per NATS URL or Kafka broker; none for
// the embedded bus.
func (e Events) Servers() []string {
	if e.BusKind() == BusEmbedded {
		return nil
	}
	var out []string
	for _, s := range strings.Split(e.Bus, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// KafkaBrokers returns the host:port of every broker a kafka:// Bus lists. Only the first
// needs the scheme: "kafka://a:9092,b:9092" and "kafka://a:9092,kafka://b:9092" are the same.
func (e Events) KafkaBrokers() []string {
	if e.BusKind() != BusKafka {
		return nil
	}
	var out []string
	for _, s := range e.Servers() {
		out = append(out, strings.TrimPrefix(s, "kafka://"))
	}
	return out
}

// StreamReplicas is Replicas, or its default when unset: 3 when Bus lists three servers or
// more, else 1.
func (e Events) StreamReplicas() int {
	if e.Replicas > 0 {
		return e.Replicas
	}
	if len(e.Servers()) >= 3 {
		return 3
	}
	return 1
}

// KafkaPartitions is Kafka.Partitions, or its default, 1, when unset.
func (e Events) KafkaPartitions() int {
	if e.Kafka.Partitions > 0 {
		return e.Kafka.Partitions
	}
	return 1
}

// setDefaults fills replicas and partitions, so that ficus check shows what applies.
func (e *Events) setDefaults() {
	if e.Replicas == 0 {
		e.Replicas = e.StreamReplicas()
	}
	if e.BusKind() == BusKafka && e.Kafka.Partitions == 0 {
		e.Kafka.Partitions = e.KafkaPartitions()
	}
}

// validateEvents checks events.bus, events.replicas, events.kafka and the embedded server's
// address.
func (p *parser) validateEvents(e Events) {
	check := p.checker()
	const busHelp = "want embedded, nats://host:port or kafka://host:port (comma-separated for a cluster)"
	switch e.BusKind() {
	case BusNATS:
		for _, raw := range e.Servers() {
			u, err := url.Parse(raw)
			ok := err == nil && (u.Scheme == "nats" || u.Scheme == "tls") && u.Host != ""
			check("events.bus", ok, "%s, got %q", busHelp, raw)
		}
	case BusKafka:
		for _, b := range e.KafkaBrokers() {
			host, port, err := net.SplitHostPort(b)
			ok := err == nil && host != "" && port != "" && !strings.Contains(b, "/")
			check("events.bus", ok, "%s: each Kafka broker is host:port, got %q", busHelp, b)
		}
	case BusEmbedded:
	default:
		check("events.bus", false, "%s, got %q", busHelp, e.Bus)
	}
	check("events.replicas", e.Replicas >= 0 && e.Replicas <= MaxReplicas, "must be between 1 and %d, got %d", MaxReplicas, e.Replicas)
	check("events.replicas", e.BusKind() != BusEmbedded || e.StreamReplicas() == 1,
		"the embedded bus is one server and keeps 1 copy, got %d; use an external cluster (nats://a,nats://b,nats://c) for more", e.Replicas)
	check("events.kafka.partitions", e.Kafka.Partitions >= 0 && e.Kafka.Partitions <= MaxKafkaPartitions,
		"must be between 1 and %d, got %d", MaxKafkaPartitions, e.Kafka.Partitions)
	check("events.kafka", e.BusKind() == BusKafka || e.Kafka == (Kafka{}), "applies to a kafka:// bus only; events.bus is %s", Redact(e.Bus))
	p.validateListen("events.embedded.listen", e.Embedded.Listen)
}

// Describe describes the bus for logs and ficus up's summary, without secrets.
func (e Events) Describe() string {
	switch e.BusKind() {
	case BusEmbedded:
		return fmt.Sprintf("embedded NATS on %s", e.Embedded.Listen)
	case BusKafka:
		return fmt.Sprintf("Kafka %s (replicas %d, partitions %d)", strings.Join(e.KafkaBrokers(), ","), e.StreamReplicas(), e.KafkaPartitions())
	}
	return fmt.Sprintf("NATS %s (replicas %d)", Redact(e.Bus), e.StreamReplicas())
}
