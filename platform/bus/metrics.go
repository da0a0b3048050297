package bus

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ficus-project/ficus/platform/event"
	ficusmetrics "github.com/ficus-project/ficus/platform/metrics"
)

// metrics are the bus's Prometheus collectors. Several Bus values may share one registerer:
// the collectors registered first are reused.
type metrics struct {
	published     prometheus.Counter
	publishErrors prometheus.Counter
	consumed      *prometheus.CounterVec
	ackErrors     *prometheus.CounterVec
	failed        *prometheus.CounterVec
	redelivered   *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	replayed      prometheus.Counter
	lag           *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ficus_events_published_total",
			Help: "Events stored by the bus (on NATS, duplicates it dropped included).",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ficus_events_publish_errors_total",
			Help: "Publish batches that failed and will be retried.",
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_events_consumed_total",
			Help: "Events a consumer handled successfully and whose acknowledgement was sent.",
		}, []string{"consumer"}),
		ackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_events_ack_errors_total",
			Help: "Acks, naks and terminations (NATS) or offset commits (Kafka, per event) a consumer could not send; the event is delivered again.",
		}, []string{"consumer"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_events_handler_errors_total",
			Help: "Deliveries whose handler returned an error.",
		}, []string{"consumer"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_events_redeliveries_total",
			Help: "Deliveries of a message a consumer had received before.",
		}, []string{"consumer"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ficus_events_dead_lettered_total",
			Help: "Messages parked in the dead-letter stream or topic.",
		}, []string{"consumer"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ficus_events_replayed_total",
			Help: "Dead letters replayed to their consumer.",
		}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ficus_events_consume_lag_seconds",
			Help:    "Time from an event's creation to its successful handling.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"consumer"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.published = ficusmetrics.Register(reg, m.published, &err)
	m.publishErrors = ficusmetrics.Register(reg, m.publishErrors, &err)
	m.consumed = ficusmetrics.Register(reg, m.consumed, &err)
	m.ackErrors = ficusmetrics.Register(reg, m.ackErrors, &err)
	m.failed = ficusmetrics.Register(reg, m.failed, &err)
	m.redelivered = ficusmetrics.Register(reg, m.redelivered, &err)
	m.deadLettered = ficusmetrics.Register(reg, m.deadLettered, &err)
	m.replayed = ficusmetrics.Register(reg, m.replayed, &err)
	m.lag = ficusmetrics.Register(reg, m.lag, &err)
	if err != nil {
		return nil, fmt.Errorf("registering bus metrics: %w", err)
	}
	return m, nil
}

// marshalEvent encodes e as the body of its message.
func marshalEvent(e event.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	return b, nil
}

// unmarshalEvent decodes a message body.
func unmarshalEvent(b []byte) (event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return event.Event{}, fmt.Errorf("decoding event: %w", err)
	}
	if e.ID == "" || e.Type == "" {
		return event.Event{}, errors.New("decoding event: envelope without id or type")
	}
	return e, nil
}
