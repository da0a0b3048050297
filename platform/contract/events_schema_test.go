package contract

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ficus-project/ficus/platform/event"
)

// samples holds a valid payload of every event type.
func eventSamples() map[string]any {
	return map[string]any{
		TypeOrderPlaced: OrderPlaced{OrderID: "o-1", CustomerID: "c-1", TotalCents: 2500, PaymentID: "p-1",
			Lines: []OrderLine{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1250}}},
		TypeOrderCancelled:            OrderCancelled{OrderID: "o-1", CustomerID: "c-1", Reason: "customer asked"},
		TypeStockChanged:              StockChanged{SKU: "SKU-1", OnHand: 10, Reserved: 2, Version: 3, Name: "Tea", PriceCents: 450},
		TypePaymentCaptured:           PaymentCaptured{PaymentID: "p-1", CustomerID: "c-1", Reference: "o-1", AmountCents: 2500},
		TypePaymentRefunded:           PaymentRefunded{PaymentID: "p-1", CustomerID: "c-1", Reference: "o-1", AmountCents: 2500},
		TypeCustomerRegistered:        CustomerRegistered{CustomerID: "c-1", Name: "Ada", Email: "ada@example.com", CreditLimitCents: 100000},
		TypeCustomerCreditLimitChange: CustomerCreditLimitChanged{CustomerID: "c-1", CreditLimitCents: 50000, Version: 2},
	}
}

func mustNewEvent(t *testing.T, typ, subject string, data any) event.Event {
	t.Helper()
	e, err := event.New("/test", typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEveryTypeHasASchemaAndEverySchemaAType(t *testing.T) {
	s, err := LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	types := EventTypes()
	for _, typ := range types {
		if s.ByType[typ] == nil {
			t.Errorf("event type %s has no schema in events_schema.yaml", typ)
		}
		if _, ok := eventSamples()[typ]; !ok {
			t.Errorf("event type %s has no sample payload in this test", typ)
		}
	}
	var extra []string
	for typ := range s.ByType {
		if !eventsHas(types, typ) {
			extra = append(extra, typ)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("schemas for types EventTypes does not list: %v", extra)
	}
}

// TestSchemasMatchGoStructs keeps the schemas and the Go payload structs in step: the same
// properties, and required exactly when the field is not omitempty.
func TestSchemasMatchGoStructs(t *testing.T) {
	s, err := LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for typ, sample := range eventSamples() {
		schema := s.ByType[typ]
		if schema == nil {
			continue
		}
		checkEventStruct(t, typ, reflect.TypeOf(sample), eventSchemaProps(schema), schema.Required)
		if typ == TypeOrderPlaced {
			items := schema.Properties["lines"].Value.Items.Value
			checkEventStruct(t, typ+" lines", reflect.TypeOf(OrderLine{}), eventSchemaProps(items), items.Required)
		}
	}
}

func eventSchemaProps(s *openapi3.Schema) []string {
	var names []string
	for name := range s.Properties {
		names = append(names, name)
	}
	return names
}

func checkEventStruct(t *testing.T, what string, rt reflect.Type, props, required []string) {
	t.Helper()
	var fields, mandatory []string
	for i := range rt.NumField() {
		name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields = append(fields, name)
		if !strings.Contains(opts, "omitempty") {
			mandatory = append(mandatory, name)
		}
	}
	sort.Strings(fields)
	sort.Strings(mandatory)
	props = append([]string(nil), props...)
	required = append([]string(nil), required...)
	sort.Strings(props)
	sort.Strings(required)
	if !reflect.DeepEqual(fields, props) {
		t.Errorf("%s: Go fields %v, schema properties %v", what, fields, props)
	}
	if !reflect.DeepEqual(mandatory, required) {
		t.Errorf("%s: Go fields without omitempty %v, schema required %v", what, mandatory, required)
	}
}

func TestValidSamplesPass(t *testing.T) {
	for typ, data := range eventSamples() {
		if err := ValidateEvent(mustNewEvent(t, typ, "x", data)); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

func TestWrongEventsFail(t *testing.T) {
	valid := mustNewEvent(t, TypeStockChanged, "SKU-1", eventSamples()[TypeStockChanged])
	withData := func(data string) event.Event {
		e := valid
		e.Data = json.RawMessage(data)
		return e
	}
	tests := []struct {
		name string
		e    event.Event
		want error
		msg  string
	}{
		{"unknown type", func() event.Event { e := valid; e.Type = "shop.nope.v1"; return e }(), ErrUnknownEventType, "shop.nope.v1"},
		{"missing field", withData(`{"sku":"SKU-1","on_hand":1,"reserved":0,"version":1,"name":"Tea"}`), ErrInvalidEvent, "price_cents"},
		{"wrong type", withData(`{"sku":"SKU-1","on_hand":"ten","reserved":0,"version":1,"name":"Tea","price_cents":1}`), ErrInvalidEvent, "on_hand"},
		{"fraction", withData(`{"sku":"SKU-1","on_hand":1.5,"reserved":0,"version":1,"name":"Tea","price_cents":1}`), ErrInvalidEvent, "on_hand"},
		{"unknown field", withData(`{"sku":"SKU-1","on_hand":1,"reserved":0,"version":1,"name":"Tea","price_cents":1,"colour":"red"}`), ErrInvalidEvent, "colour"},
		{"negative stock", withData(`{"sku":"SKU-1","on_hand":-1,"reserved":0,"version":1,"name":"Tea","price_cents":1}`), ErrInvalidEvent, "on_hand"},
		{"not an object", withData(`[1,2]`), ErrInvalidEvent, "data"},
		{"not JSON", withData(`{`), ErrInvalidEvent, "data"},
		{"no id", func() event.Event { e := valid; e.ID = ""; return e }(), ErrInvalidEvent, "id"},
		{"no source", func() event.Event { e := valid; e.Source = ""; return e }(), ErrInvalidEvent, "source"},
		{"old spec", func() event.Event { e := valid; e.SpecVersion = "0.3"; return e }(), ErrInvalidEvent, "specversion"},
		{"no time", func() event.Event { e := valid; e.Time = time.Time{}; return e }(), ErrInvalidEvent, "time"},
		{"xml", func() event.Event { e := valid; e.DataContentType = "application/xml"; return e }(), ErrInvalidEvent, "datacontenttype"},
		{"empty line list", mustNewEvent(t, TypeOrderPlaced, "o-1", OrderPlaced{OrderID: "o", CustomerID: "c", Lines: []OrderLine{}}), ErrInvalidEvent, "lines"},
		{"bad line", mustNewEvent(t, TypeOrderPlaced, "o-1", OrderPlaced{OrderID: "o", CustomerID: "c", Lines: []OrderLine{{SKU: "s", Quantity: 0}}}), ErrInvalidEvent, "quantity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEvent(tt.e)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ValidateEvent = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func eventsHas(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
