package contract

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestLimitsMatchOpenAPI holds the Go limits and the document's bounds together: the server
// enforces the constants, clients read the document.
func TestLimitsMatchOpenAPI(t *testing.T) {
	doc, err := LoadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	schema := func(name string) *openapi3.Schema {
		t.Helper()
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Fatalf("no schema %s", name)
		}
		return s.Value
	}
	prop := func(schemaName, p string) *openapi3.Schema {
		t.Helper()
		s := schema(schemaName).Properties[p]
		if s == nil {
			t.Fatalf("schema %s has no property %s", schemaName, p)
		}
		return s.Value
	}
	bound := func(what string, s *openapi3.Schema, lo, hi float64) {
		t.Helper()
		if s.Min == nil || *s.Min != lo || s.Max == nil || *s.Max != hi {
			t.Errorf("%s: openapi.yaml bounds %v..%v, want %v..%v", what, deref(s.Min), deref(s.Max), lo, hi)
		}
	}
	money := float64(MaxCents)
	bound("Cents", schema("Cents"), 0, money)
	bound("PositiveCents", schema("PositiveCents"), 1, money)
	bound("Quantity", schema("Quantity"), 1, MaxLineQuantity)
	bound("StockCount", schema("StockCount"), 0, MaxStock)
	bound("RestockRequest.quantity", prop("RestockRequest", "quantity"), 1, MaxStock)
	for _, p := range []struct{ schema, prop string }{
		{"CreateCustomerRequest", "credit_limit_cents"}, {"SetCreditLimitRequest", "credit_limit_cents"},
		{"Customer", "credit_limit_cents"}, {"CreateItemRequest", "price_cents"}, {"Item", "price_cents"},
		{"OrderLine", "unit_price_cents"}, {"Order", "total_cents"},
		{"CreatePaymentRequest", "amount_cents"}, {"Payment", "amount_cents"},
		{"CreateItemRequest", "on_hand"}, {"Item", "on_hand"}, {"Item", "reserved"}, {"Item", "available"},
		{"Line", "quantity"}, {"OrderLine", "quantity"},
	} {
		s := prop(p.schema, p.prop)
		if s.Max == nil {
			t.Errorf("%s.%s has no maximum", p.schema, p.prop)
		}
	}
	if n := schema("CreateOrderRequest").Properties["lines"].Value.MaxItems; n == nil || *n != MaxOrderLines {
		t.Errorf("CreateOrderRequest.lines maxItems %v, want %d", n, MaxOrderLines)
	}
	limit := doc.Components.Parameters["Limit"].Value.Schema.Value
	bound("Limit", limit, 1, MaxPageLimit)
	if limit.Default != float64(DefaultPageLimit) {
		t.Errorf("Limit default %v, want %d", limit.Default, DefaultPageLimit)
	}
	for _, list := range []struct{ schema, prop string }{{"OrderList", "orders"}, {"ItemList", "items"}, {"CustomerList", "customers"}} {
		if n := prop(list.schema, list.prop).MaxItems; n == nil || *n != MaxPageLimit {
			t.Errorf("%s.%s maxItems %v, want %d", list.schema, list.prop, n, MaxPageLimit)
		}
	}
	if float64(MaxStock) >= 1<<31 {
		t.Errorf("MaxStock %d does not fit the document's int32", MaxStock)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "none"
	}
	return *p
}

func TestTimestampIsUTCMilliseconds(t *testing.T) {
	zone := time.FixedZone("", 2*3600)
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), `"2024-05-01T10:00:00.000Z"`},
		{time.Date(2024, 5, 1, 12, 0, 0, 123456789, zone), `"2024-05-01T10:00:00.123Z"`},
		{time.Date(2024, 5, 1, 10, 0, 0, 999999999, time.UTC), `"2024-05-01T10:00:00.999Z"`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(struct{ At Timestamp }{Timestamp(tt.in)})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"At":` + tt.want + `}`; string(b) != want {
			t.Errorf("%v encodes as %s, want %s", tt.in, b, want)
		}
		var back Timestamp
		if err := json.Unmarshal([]byte(tt.want), &back); err != nil || !back.Time().Equal(tt.in.Truncate(time.Millisecond)) {
			t.Errorf("%s decodes to %v (%v)", tt.want, back.Time(), err)
		}
	}
	if _, err := json.Marshal(Timestamp(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))); err == nil {
		t.Errorf("a five-digit year encoded without error")
	}
	if OptionalTimestamp(nil) != nil {
		t.Errorf("OptionalTimestamp(nil) is not nil")
	}
}
