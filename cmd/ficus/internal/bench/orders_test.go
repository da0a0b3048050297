package bench

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOrdersHasItsBaseline: a small run prints the in-process baseline, the HTTP row and the
// remote-mode (saga) row with their ratios to it, and remote mode's ratio to local mode; every
// order succeeds.
func TestOrdersHasItsBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := Orders(ctx, OrdersOptions{Orders: 200, Clients: 4}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, row := range []*regexp.Regexp{
		regexp.MustCompile(`sqlite\s+in process\s+200\s+0\s+\d+\s.*\s-\s+-\s*\n`),
		regexp.MustCompile(`sqlite\s+HTTP\s+200\s+0\s+\d+\s.*\s\d+\.\d\d\s+\d+\.\d\d\s*\n`),
		// Remote mode: the saga places the same orders across the extracted services.
		regexp.MustCompile(`sqlite\s+HTTP, remote \(saga\)\s+200\s+0\s+\d+\s.*\s\d+\.\d\d\s+\d+\.\d\d\s*\n`),
		regexp.MustCompile(`remote mode \(saga\): \d+ orders/s, p99 \S+ = \d+\.\d\d× local mode's \d+ orders/s`),
	} {
		if !row.MatchString(out.String()) {
			t.Errorf("no row matching %s in:\n%s", row, out.String())
		}
	}
}

// TestOrdersReportsAnEngineThatFails: an engine that cannot be opened is reported in its
// row and in the error, after the engines that work.
func TestOrdersReportsAnEngineThatFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Orders(ctx, OrdersOptions{Orders: 50, Clients: 2,
		Databases: []string{"sqlite", "postgres://bench@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}}, &out)
	if err == nil || !strings.Contains(err.Error(), "postgres, in process") {
		t.Fatalf("err = %v, want the postgres failure\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "PostgreSQL's own CPU") || !regexp.MustCompile(`postgres\s+in process\s+failed: see below`).MatchString(out.String()) ||
		!regexp.MustCompile(`sqlite\s+HTTP\s+50\s+0`).MatchString(out.String()) {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:1/api/inventory/items/A-1
  1 threads and 16 connections
  Latency Distribution
     50%  188.00us
     75%  1.27ms
     90%  2.01ms
     99%    1.00m
  53000 requests in 5.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:  10600.00
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 53000 || r.rps != 10600 || r.p50 != 188*time.Microsecond || r.p99 != time.Minute || r.errors != 7 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseWrk("nothing useful"); err == nil {
		t.Error("no error for output without figures")
	}
}
