package resilience

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	}), BreakerSettings{Name: "inv", ConsecutiveFailures: 3, OpenFor: 50 * time.Millisecond, HalfOpenRequests: 1,
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
	// gobreaker reads the real clock: wait for the state itself, with a short deadline.
	waitFor(t, func() bool { return b.State() == gobreaker.StateHalfOpen })
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
	}), BreakerSettings{ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond})
	b.RoundTrip(newReq("GET", ""))
	waitFor(t, func() bool { return b.State() == gobreaker.StateHalfOpen })
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

// fakeBody is a ClientBody whose answers the test sets.
type fakeBody struct {
	err    error
	waited func() time.Duration
}

func (f *fakeBody) ClientErr() error { return f.err }
func (f *fakeBody) Waited() time.Duration {
	if f.waited == nil {
		return 0
	}
	return f.waited()
}

// TestBreakerIgnoresClientFaults checks failures that are the client's — its body could
// not be read, whether the transport says so or only the body knows — never open the
// breaker.
func TestBreakerIgnoresClientFaults(t *testing.T) {
	broken := errors.New("write tcp: broken pipe") // how the transport may report it
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if ClientBodyOf(r) != nil {
			return nil, broken
		}
		return nil, fmt.Errorf("reading body: %w", ErrClientBody)
	}), BreakerSettings{ConsecutiveFailures: 2, OpenFor: time.Minute})
	body := &fakeBody{err: errors.New("invalid byte in chunk length")}
	for range 10 {
		b.RoundTrip(newReq("POST", "x"))
		b.RoundTrip(newReq("POST", "x").WithContext(WithClientBody(context.Background(), body)))
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("client faults opened the breaker")
	}
	// The same broken pipe with a body that read fine is the backend's.
	body.err = nil
	for range 2 {
		b.RoundTrip(newReq("POST", "x").WithContext(WithClientBody(context.Background(), body)))
	}
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("state = %s after 2 backend failures, want open", b.State())
	}
}

// TestBreakerReset checks Reset closes an open breaker at once, reports the change, and
// admits requests again; on a closed breaker it does nothing.
func TestBreakerReset(t *testing.T) {
	var changes []string
	fail := true
	b := NewBreaker(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if fail {
			return nil, errors.New("connection refused")
		}
		return okResponse(r, 200, ""), nil
	}), BreakerSettings{Name: "m", ConsecutiveFailures: 1, OpenFor: time.Hour,
		OnStateChange: func(_ string, from, to gobreaker.State) { changes = append(changes, from.String()+">"+to.String()) }})
	if b.Reset() {
		t.Fatal("Reset of a closed breaker reported a change")
	}
	b.RoundTrip(newReq("GET", ""))
	if _, err := b.RoundTrip(newReq("GET", "")); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("err = %v, want open", err)
	}
	fail = false
	if !b.Reset() || b.State() != gobreaker.StateClosed {
		t.Fatalf("Reset: state %s", b.State())
	}
	if resp, err := b.RoundTrip(newReq("GET", "")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after Reset: %v", err)
	}
	if got := strings.Join(changes, " "); got != "closed>open open>closed" {
		t.Fatalf("changes %q", got)
	}
}
