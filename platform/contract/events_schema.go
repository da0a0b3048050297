package contract

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ficus-project/ficus/platform/event"
)

// EventsSchemaYAML is the event contract: an OpenAPI 3 document whose components hold the
// CloudEvents envelope (CloudEvent) and one schema per event type, named in x-event-type.
//
//go:embed events_schema.yaml
var EventsSchemaYAML []byte

// ErrUnknownEventType is returned by ValidateEvent for a type with no schema.
var ErrUnknownEventType = errors.New("unknown event type")

// ErrInvalidEvent is returned, wrapped with the details, by ValidateEvent for an event that
// breaks its schema.
var ErrInvalidEvent = errors.New("invalid event")

// EventSchemas is the parsed event contract.
type EventSchemas struct {
	// Envelope is the CloudEvents envelope schema.
	Envelope *openapi3.Schema
	// ByType maps each event type to the schema of its data.
	ByType map[string]*openapi3.Schema
	// Names maps each event type to its schema's name in the document.
	Names map[string]string
}

// loadEventSchemas parses the embedded contract once; the result is immutable.
var loadEventSchemas = sync.OnceValues(func() (*EventSchemas, error) {
	return ParseEventSchemas(EventsSchemaYAML)
})

// LoadEventSchemas returns the embedded event contract.
func LoadEventSchemas() (*EventSchemas, error) { return loadEventSchemas() }

// ParseEventSchemas parses an event contract document.
func ParseEventSchemas(doc []byte) (*EventSchemas, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("loading event schemas: %w", err)
	}
	if err := t.Components.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validating event schemas: %w", err)
	}
	env, ok := t.Components.Schemas["CloudEvent"]
	if !ok || env.Value == nil {
		return nil, errors.New("loading event schemas: no CloudEvent envelope schema")
	}
	s := &EventSchemas{Envelope: env.Value, ByType: map[string]*openapi3.Schema{}, Names: map[string]string{}}
	names := make([]string, 0, len(t.Components.Schemas))
	for name := range t.Components.Schemas {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ref := t.Components.Schemas[name]
		typ, ok := ref.Value.Extensions["x-event-type"].(string)
		if !ok {
			continue
		}
		if prev, dup := s.Names[typ]; dup {
			return nil, fmt.Errorf("loading event schemas: %s and %s both describe %s", prev, name, typ)
		}
		s.ByType[typ] = ref.Value
		s.Names[typ] = name
	}
	return s, nil
}

// ValidateEvent checks e's envelope against the CloudEvents schema and its data against the
// schema of its type. An unknown type is an error (ErrUnknownEventType).
func ValidateEvent(e event.Event) error {
	s, err := LoadEventSchemas()
	if err != nil {
		return err
	}
	return s.Validate(e)
}

// Validate is ValidateEvent against s.
func (s *EventSchemas) Validate(e event.Event) error {
	schema, ok := s.ByType[e.Type]
	if !ok {
		return fmt.Errorf("validating event %s: %w %q", e.ID, ErrUnknownEventType, e.Type)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("validating event %s (%s): %w: envelope: time is not set", e.ID, e.Type, ErrInvalidEvent)
	}
	var data any
	if err := json.Unmarshal(e.Data, &data); err != nil {
		return fmt.Errorf("validating event %s (%s): %w: data: %v", e.ID, e.Type, ErrInvalidEvent, err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("validating event %s (%s): %w: %v", e.ID, e.Type, ErrInvalidEvent, err)
	}
	var envelope any
	if err := json.Unmarshal(raw, &envelope); err != nil {
		return fmt.Errorf("validating event %s (%s): %w: %v", e.ID, e.Type, ErrInvalidEvent, err)
	}
	if err := s.Envelope.VisitJSON(envelope, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("validating event %s (%s): %w: envelope: %v", e.ID, e.Type, ErrInvalidEvent, err)
	}
	if err := schema.VisitJSON(data, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("validating event %s (%s): %w: data: %v", e.ID, e.Type, ErrInvalidEvent, err)
	}
	return nil
}
