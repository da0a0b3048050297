package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

// TestEventsBus: what each form of events.bus means, and the replicas and partitions it
// defaults to.
func TestEventsBus(t *testing.T) {
	tests := []struct {
		yaml       string
		kind       string
		servers    []string
		brokers    []string
		replicas   int
		partitions int
	}{
		{"", config.BusEmbedded, nil, nil, 1, 0},
		{"events: { bus: nats://a:4222 }\n", config.BusNATS, []string{"nats://a:4222"}, nil, 1, 0},
		{"events: { bus: 'nats://a:4222, nats://b:4222,nats://c:4222' }\n", config.BusNATS,
			[]string{"nats://a:4222", "nats://b:4222", "nats://c:4222"}, nil, 3, 0},
		{"events: { bus: 'nats://a:4222,nats://b:4222,nats://c:4222', replicas: 1 }\n", config.BusNATS,
			[]string{"nats://a:4222", "nats://b:4222", "nats://c:4222"}, nil, 1, 0},
		{"events: { bus: nats://seed:4222, replicas: 5 }\n", config.BusNATS, []string{"nats://seed:4222"}, nil, 5, 0},
		{"events: { bus: 'kafka://a:9092,b:9092' }\n", config.BusKafka,
			[]string{"kafka://a:9092", "b:9092"}, []string{"a:9092", "b:9092"}, 1, 1},
		{"events: { bus: 'kafka://a:9092,kafka://b:9092,c:9092', kafka: { partitions: 12 } }\n", config.BusKafka,
			[]string{"kafka://a:9092", "kafka://b:9092", "c:9092"}, []string{"a:9092", "b:9092", "c:9092"}, 3, 12},
	}
	for _, tt := range tests {
		cfg, err := config.Parse("c.yaml", []byte(valid+tt.yaml))
		if err != nil {
			t.Errorf("%q: %v", tt.yaml, err)
			continue
		}
		ev := cfg.Events
		if ev.BusKind() != tt.kind || !slices.Equal(ev.Servers(), tt.servers) || !slices.Equal(ev.KafkaBrokers(), tt.brokers) ||
			ev.Replicas != tt.replicas || ev.Kafka.Partitions != tt.partitions {
			t.Errorf("%q: kind %q, servers %q, brokers %q, replicas %d, partitions %d; want %q, %q, %q, %d, %d", tt.yaml,
				ev.BusKind(), ev.Servers(), ev.KafkaBrokers(), ev.Replicas, ev.Kafka.Partitions,
				tt.kind, tt.servers, tt.brokers, tt.replicas, tt.partitions)
		}
	}
	// Code that builds config.Events without Parse (tests, ficus compare) gets the same
	// defaults from the accessors.
	ev := config.Events{Bus: "kafka://a:1,b:2,c:3"}
	if ev.StreamReplicas() != 3 || ev.KafkaPartitions() != 1 {
		t.Errorf("unparsed %+v: replicas %d, partitions %d; want 3, 1", ev, ev.StreamReplicas(), ev.KafkaPartitions())
	}
}

func TestEventsProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"scheme", "events: { bus: http://x }\n", []string{`events.bus: want embedded, nats://host:port or kafka://host:port`}},
		{"nats without host", "events: { bus: 'nats://a:4222,nats://' }\n", []string{`events.bus: want embedded`, `got "nats://"`}},
		{"kafka without port", "events: { bus: 'kafka://a:9092,b' }\n", []string{`each Kafka broker is host:port, got "b"`}},
		{"kafka with a path", "events: { bus: 'kafka://a:9092/x' }\n", []string{`each Kafka broker is host:port, got "a:9092/x"`}},
		{"replicas", "events: { bus: nats://a:4222, replicas: 7 }\n", []string{"events.replicas: must be between 1 and 5, got 7"}},
		{"negative replicas", "events: { bus: nats://a:4222, replicas: -1 }\n", []string{"events.replicas: must be between 1 and 5, got -1"}},
		{"embedded replicas", "events: { replicas: 3 }\n", []string{"events.replicas: the embedded bus is one server and keeps 1 copy, got 3"}},
		{"partitions", "events: { bus: kafka://a:9092, kafka: { partitions: 5000 } }\n", []string{"events.kafka.partitions: must be between 1 and 1024, got 5000"}},
		{"kafka block on nats", "events: { bus: nats://a:4222, kafka: { partitions: 3 } }\n", []string{"events.kafka: applies to a kafka:// bus only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("c.yaml", []byte(valid+tt.yaml))
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}
