package resilience

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingBackend answers once released, or fails when its request's context ends; the
// release happens in t.Cleanup at the latest, so a broken bulkhead that lets too much
// through makes the test fail, not hang.
func blockingBackend(t *testing.T) (RoundTripFunc, func()) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	return func(r *http.Request) (*http.Response, error) {
		select {
		case <-release:
			return okResponse(r, 200, "ok"), nil
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}, free
}

// shortReq is a request that gives up after 2s, so a request the bulkhead should have
// refused but let through ends the test quickly.
func shortReq(t *testing.T) *http.Request {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return newReq("GET", "").WithContext(ctx)
}

func TestBulkheadQueuesThenRejects(t *testing.T) {
	backend, release := blockingBackend(t)
	var rejected atomic.Int32
	b := NewBulkhead(backend, BulkheadSettings{MaxConcurrent: 2, MaxQueue: 1, QueueTimeout: 5 * time.Second, OnReject: func() { rejected.Add(1) }})

	results := make(chan error, 3)
	for range 3 {
		go func() {
			resp, err := b.RoundTrip(shortReq(t))
			if err == nil {
				resp.Body.Close()
			}
			results <- err
		}()
	}
	waitFor(t, func() bool { return b.InFlight() == 2 && b.Queued() == 1 })

	start := time.Now()
	_, err := b.RoundTrip(shortReq(t))
	if !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("4th request: err = %v, want ErrBulkheadFull", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("rejection took %s, want fast", d)
	}
	if rejected.Load() != 1 {
		t.Fatalf("OnReject called %d times", rejected.Load())
	}
	release()
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
	backend, _ := blockingBackend(t)
	b := NewBulkhead(backend, BulkheadSettings{MaxConcurrent: 1, MaxQueue: 5, QueueTimeout: 30 * time.Millisecond})
	go b.RoundTrip(shortReq(t))
	waitFor(t, func() bool { return b.InFlight() == 1 })
	start := time.Now()
	_, err := b.RoundTrip(shortReq(t))
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
