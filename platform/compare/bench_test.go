package compare_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/compare"
)

// sampleOrder returns an order body with n lines, as the shop answers it. The other side's
// variant has the same content in another key order and number formatting.
func sampleOrder(n int, otherSide bool) string {
	lines := make([]string, n)
	for i := range n {
		if otherSide {
			lines[i] = fmt.Sprintf(`{"unit_price_cents": %d.00, "quantity": %de0, "sku": "SKU-%04d"}`, 1000+i, i+1, i)
		} else {
			lines[i] = fmt.Sprintf(`{"sku":"SKU-%04d","quantity":%d,"unit_price_cents":%d}`, i, i+1, 1000+i)
		}
	}
	if otherSide {
		return `{"lines": [` + strings.Join(lines, ", ") + `], "status": "placed", "total_cents": 123456789012,
			"customer_id": "0190a8a0-0000-7000-8000-00000000c001", "created_at": "2026-01-02T03:04:05.123Z",
			"payment_id": "0190a8a0-0000-7000-8000-00000000b001", "id": "0190a8a0-0000-7000-8000-00000000a001"}`
	}
	return `{"id":"0190a8a0-0000-7000-8000-00000000a001","customer_id":"0190a8a0-0000-7000-8000-00000000c001","status":"placed",` +
		`"total_cents":123456789012,"payment_id":"0190a8a0-0000-7000-8000-00000000b001","lines":[` + strings.Join(lines, ",") +
		`],"created_at":"2026-01-02T03:04:05.123Z"}`
}

// noisyOrder is sampleOrder with side-specific ids and timestamps, as two systems answer.
func noisyOrder(n int, side string) string {
	s := sampleOrder(n, side == "b")
	s = strings.ReplaceAll(s, "-8000-", "-"+map[string]string{"a": "8000", "b": "9000"}[side]+"-")
	if side == "b" {
		s = strings.ReplaceAll(s, "03:04:05.123Z", "03:04:06.456Z")
	}
	return s
}

func BenchmarkCompare(b *testing.B) {
	rules := compare.Rules{
		Capture:    []compare.ValueRule{{Class: compare.ClassUUID}},
		Equivalent: []compare.ValueRule{{Class: compare.ClassRFC3339}},
	}
	c, err := compare.New(rules)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		a, b compare.Response
		ids  func() *compare.IDs
	}{
		{"equal-order-10-lines", jsonResp(201, sampleOrder(10, false)), jsonResp(201, sampleOrder(10, true)), nil},
		{"equal-order-100-lines", jsonResp(201, sampleOrder(100, false)), jsonResp(201, sampleOrder(100, true)), nil},
		{"noisy-order-10-lines-first-sight", jsonResp(201, noisyOrder(10, "a")), jsonResp(201, noisyOrder(10, "b")), nil},
		{"noisy-order-10-lines-known-ids", jsonResp(201, noisyOrder(10, "a")), jsonResp(201, noisyOrder(10, "b")), func() *compare.IDs {
			ids := &compare.IDs{}
			c.Compare(jsonResp(201, noisyOrder(10, "a")), jsonResp(201, noisyOrder(10, "b")), ids)
			return ids
		}},
		{"one-field-differs", jsonResp(201, sampleOrder(10, false)), jsonResp(201, strings.Replace(sampleOrder(10, true), `"quantity": 3e0`, `"quantity": 4`, 1)), nil},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var ids *compare.IDs
			if tc.ids != nil {
				ids = tc.ids()
			}
			if r := c.Compare(tc.a, tc.b, ids); r.Equal() == strings.HasPrefix(tc.name, "one-field") {
				b.Fatalf("differences: %v", diffs(r))
			}
			b.SetBytes(int64(len(tc.a.Body) + len(tc.b.Body)))
			b.ReportAllocs()
			for b.Loop() {
				c.Compare(tc.a, tc.b, ids)
			}
		})
	}
}

// BenchmarkBaselineDecodeBoth is what a naive differ costs at least: decoding both bodies
// with encoding/json (numbers kept as text) and comparing the trees. It is the same-run
// baseline for BenchmarkCompare's equal-order cases (and it is not even right: 1 ≠ 1.0).
func BenchmarkBaselineDecodeBoth(b *testing.B) {
	for _, n := range []int{10, 100} {
		a, c := []byte(sampleOrder(n, false)), []byte(sampleOrder(n, true))
		b.Run(fmt.Sprintf("order-%d-lines", n), func(b *testing.B) {
			b.SetBytes(int64(len(a) + len(c)))
			b.ReportAllocs()
			for b.Loop() {
				var va, vc any
				if json.Unmarshal(a, &va) != nil || json.Unmarshal(c, &vc) != nil {
					b.Fatal("not JSON")
				}
				_ = reflect.DeepEqual(va, vc)
			}
		})
	}
}
