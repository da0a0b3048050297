package bus

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/event"
)

// FuzzUnmarshalEvent: the envelope decoder every consumer runs on bytes from the bus never
// panics, accepts only envelopes with an id and a type, and what it accepts survives a round
// trip through the encoder the relay publishes with.
func FuzzUnmarshalEvent(f *testing.F) {
	e, err := event.New("/monolith/inventory", "shop.inventory.stock_changed.v1", "SKU-1",
		map[string]any{"sku": "SKU-1", "on_hand": 3, "reserved": 1, "version": 7})
	if err != nil {
		f.Fatal(err)
	}
	e.Time = time.Date(2026, 12, 6, 10, 0, 0, 123_000_000, time.UTC)
	good, err := marshalEvent(e)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		good,
		[]byte(`{}`),
		[]byte(`{"id":"x","type":"t"}`),
		[]byte(`{"id":"x","type":"t","data":null}`),
		[]byte(`{"id":"x","type":"t","time":"not a time"}`),
		[]byte(`{"id":"","type":"t"}`),
		[]byte(`[1,2,3]`),
		[]byte(`{"id":"x","type":"t","data":{"a":[1,{"b":"\u0000"}]}}`),
		[]byte(`not json`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := unmarshalEvent(b)
		if err != nil {
			return
		}
		if e.ID == "" || e.Type == "" {
			t.Fatalf("accepted an envelope without id or type: %q", b)
		}
		again, err := marshalEvent(e)
		if err != nil {
			t.Fatalf("an accepted envelope does not encode: %v", err)
		}
		back, err := unmarshalEvent(again)
		if err != nil {
			t.Fatalf("an encoded envelope does not decode: %v (%s)", err, again)
		}
		if back.ID != e.ID || back.Type != e.Type || back.Subject != e.Subject || back.Source != e.Source ||
			!back.Time.Equal(e.Time) || !jsonEqual(back.Data, e.Data) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, back)
		}
	})
}

// jsonEqual compares two JSON documents by value (nil and null alike).
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return len(bytes.TrimSpace(a)) == 0 && string(bytes.TrimSpace(b)) == "null" ||
			len(bytes.TrimSpace(b)) == 0 && string(bytes.TrimSpace(a)) == "null"
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
