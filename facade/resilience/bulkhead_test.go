package resilience

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestBulkheadQueuesThenRejects(t *testing.T) {
	release := make(chan struct{})
	var rejected atomic.Int32
	b := NewBulkhead(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		return okResponse(r, 200, "ok"), nil
	}), BulkheadSettings{MaxConcurrent: 2, MaxQueue: 1, QueueTimeout: 5 * time.Second, OnReject: func() { rejected.Add(1) }})

	results := make(chan error, 3)
	for range 3 {
		go func() {
			resp, err := b.RoundTrip(newReq("GET", ""))
			if err == nil {
				resp.Body.Close()
			}
			results <- err
		}()
	}
	waitFor(t, func() bool { return b.InFlight() == 2 && b.Queued() == 1 })

	start := time.Now()
	_, err := b.RoundTrip(newReq("GET", ""))
	if !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("4th request: err = %v, want ErrBulkheadFull", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("rejection took %s, want fast", d)
	}
	if rejected.Load() != 1 {
		t.Fatalf("OnReject called %d times", rejected.Load())
	}
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("queued request failed: %v", err)
		}
	}
	if b.InFlight() != 0 || b.Queued() != 0 {
		t.Fatalf("in flight %d, queued %d after all done", b.InFlight(), b.Queued())
	}
}

func TestBulkheadQueueTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := NewBulkhead(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		return okResponse(r, 200, ""), nil
	}), BulkheadSettings{MaxConcurrent: 1, MaxQueue: 5, QueueTimeout: 30 * time.Millisecond})
	go b.RoundTrip(newReq("GET", ""))
	waitFor(t, func() bool { return b.InFlight() == 1 })
	start := time.Now()
	_, err := b.RoundTrip(newReq("GET", ""))
	if !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("err = %v, want ErrBulkheadFull", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond || d > time.Second {
		t.Fatalf("waited %s, want about 30ms", d)
	}
}

func TestBulkheadHoldsSlotUntilBodyClosed(t *testing.T) {
	b := NewBulkhead(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return okResponse(r, 200, "body"), nil
	}), BulkheadSettings{MaxConcurrent: 1})
	resp, err := b.RoundTrip(newReq("GET", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RoundTrip(newReq("GET", "")); !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("second request while the first body is open: err = %v, want ErrBulkheadFull", err)
	}
	resp.Body.Close()
	resp.Body.Close() // twice must not release twice
	resp, err = b.RoundTrip(newReq("GET", ""))
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	resp.Body.Close()
	if b.InFlight() != 0 {
		t.Fatalf("in flight = %d", b.InFlight())
	}
}

func TestBulkheadReleasesOnError(t *testing.T) {
	b := NewBulkhead(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, errors.New("dial refused")
	}), BulkheadSettings{MaxConcurrent: 1})
	for range 3 {
		if _, err := b.RoundTrip(newReq("GET", "")); errors.Is(err, ErrBulkheadFull) {
			t.Fatal("slot leaked after an error")
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}
