package resilience

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

func TestBreakerOpensRejectsAndRecovers(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	var hits atomic.Int32
	var mu sync.Mutex
	var changes []string
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		hits.Add(1)
		return okResponse(r, int(status.Load()), ""), nil
	}), BreakerSettings{Name: "inv", ConsecutiveFailures: 3, OpenFor: 250 * time.Millisecond, HalfOpenRequests: 1,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			mu.Lock()
			changes = append(changes, from.String()+">"+to.String())
			mu.Unlock()
		}})

	for i := range 3 {
		resp, err := b.RoundTrip(newReq("GET", ""))
		if err != nil || resp.StatusCode != 500 {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("state = %s after 3 failures, want open", b.State())
	}
	if _, err := b.RoundTrip(newReq("GET", "")); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("err = %v, want ErrCircuitOpen", err)
	}
	if hits.Load() != 3 {
		t.Fatalf("backend hit %d times, want 3 (open breaker must not call it)", hits.Load())
	}
	status.Store(200)
	time.Sleep(300 * time.Millisecond)
	if b.State() != gobreaker.StateHalfOpen {
		t.Fatalf("state = %s after OpenFor, want half-open", b.State())
	}
	if resp, err := b.RoundTrip(newReq("GET", "")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("trial request: %v", err)
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("state = %s after a successful trial, want closed", b.State())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"closed>open", "open>half-open", "half-open>closed"}
	if len(changes) != len(want) {
		t.Fatalf("state changes = %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("state changes = %v, want %v", changes, want)
		}
	}
}

func TestBreakerCountsErrorsNotClientCancels(t *testing.T) {
	fail := errors.New("connection refused")
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if err := r.Context().Err(); err != nil {
			return nil, err
		}
		return nil, fail
	}), BreakerSettings{ConsecutiveFailures: 2, OpenFor: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		b.RoundTrip(newReq("GET", "").WithContext(ctx))
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("client cancellations opened the breaker")
	}
	b.RoundTrip(newReq("GET", ""))
	b.RoundTrip(newReq("GET", ""))
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("state = %s after 2 connection errors, want open", b.State())
	}
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return okResponse(r, 503, ""), nil
	}), BreakerSettings{ConsecutiveFailures: 1, OpenFor: 250 * time.Millisecond})
	b.RoundTrip(newReq("GET", ""))
	time.Sleep(300 * time.Millisecond)
	b.RoundTrip(newReq("GET", "")) // the trial fails
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("state = %s, want open again", b.State())
	}
}

func TestBreakerSuccessKeepsClosed(t *testing.T) {
	n := 0
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if n%2 == 0 {
			return okResponse(r, 404, ""), nil // a 4xx is the client's problem, a success here
		}
		return okResponse(r, 500, ""), nil
	}), BreakerSettings{ConsecutiveFailures: 2})
	for range 10 {
		b.RoundTrip(newReq("GET", ""))
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("alternating failures opened a breaker that needs 2 in a row")
	}
}
