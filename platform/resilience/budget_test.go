package resilience

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBudgetRatio(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := NewBudget(BudgetSettings{Ratio: 0.2, MinRetries: -1, Window: 10 * time.Second, Now: clk.Now})
	if b.Retry() {
		t.Fatal("retry allowed with no requests and no minimum")
	}
	for range 50 {
		b.Request()
	}
	allowed := 0
	for range 100 {
		if b.Retry() {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("allowed %d retries for 50 requests at 0.2, want 10", allowed)
	}
}

func TestBudgetMinimumAndWindow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := NewBudget(BudgetSettings{Ratio: 0.1, MinRetries: 3, Window: 10 * time.Second, Now: clk.Now})
	allowed := 0
	for range 10 {
		if b.Retry() {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("allowed %d retries with no requests, want the minimum 3", allowed)
	}
	if b.Retry() {
		t.Fatal("budget exceeded")
	}
	// Once the window has slid past them, old retries no longer count.
	clk.Advance(11 * time.Second)
	if !b.Retry() {
		t.Fatal("retry refused after the window slid")
	}
	// Requests age out too.
	for range 100 {
		b.Request()
	}
	clk.Advance(5 * time.Second)
	n := 0
	for b.Retry() {
		n++
	}
	if n != 3+10-1 {
		t.Fatalf("allowed %d retries half a window later, want %d", n, 3+10-1)
	}
	clk.Advance(6 * time.Second)
	if b.Retry() {
		// the 100 requests (and the retries) are out of the window; the minimum of 3 is
		// used up by the retries of the last 5s
		t.Fatal("retry allowed on requests that aged out of the window")
	}
}
