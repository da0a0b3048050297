// Package event defines the envelope every Ficus event travels in: CloudEvents 1.0 field names,
// JSON encoded.
package event

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// Event is one fact that happened, in a CloudEvents envelope.
type Event struct {
	// ID is unique per event; consumers deduplicate on it.
	ID string `json:"id"`
	// Source names the emitter, as in "/monolith/inventory" or "/services/payments".
	Source      string `json:"source"`
	SpecVersion string `json:"specversion"`
	// Type is versioned: "shop.inventory.stock_changed.v1".
	Type string `json:"type"`
	// Subject is the entity the event is about (a SKU, an order id); events of one subject
	// are published in order.
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// New builds an event with a fresh, time-ordered id.
func New(source, typ, subject string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encoding %s data: %w", typ, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("new event id: %w", err)
	}
	return Event{
		ID:              id.String(),
		Source:          source,
		SpecVersion:     SpecVersion,
		Type:            typ,
		Subject:         subject,
		Time:            time.Now().UTC(),
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decoding %s data: %w", e.Type, err)
	}
	return nil
}
