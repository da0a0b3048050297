package resilience

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestTimeoutFires(t *testing.T) {
	tm := &Timeout{Timeout: 30 * time.Millisecond, Next: RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	})}
	start := time.Now()
	_, err := tm.RoundTrip(newReq("GET", ""))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestTimeoutCoversHeadersNotBody(t *testing.T) {
	var attemptCtx context.Context
	pr, pw := io.Pipe()
	tm := &Timeout{Timeout: 20 * time.Millisecond, Next: RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		attemptCtx = r.Context()
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: pr}, nil
	})}
	resp, err := tm.RoundTrip(newReq("GET", ""))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(60 * time.Millisecond) // a body that streams past the timeout
		pw.Write([]byte("late body"))
		pw.Close()
	}()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "late body" {
		t.Fatalf("body = %q, %v", b, err)
	}
	if attemptCtx.Err() != nil {
		t.Fatal("attempt context ended before the body was closed")
	}
	resp.Body.Close()
	if attemptCtx.Err() == nil {
		t.Fatal("attempt context still live after the body was closed")
	}
}

func TestTimeoutClientCancelIsNotTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tm := &Timeout{Timeout: time.Second, Next: RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		cancel()
		<-r.Context().Done()
		return nil, r.Context().Err()
	})}
	_, err := tm.RoundTrip(newReq("GET", "").WithContext(ctx))
	if err == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want a cancellation that is not ErrTimeout", err)
	}
}

func TestTimeoutZeroMeansNone(t *testing.T) {
	called := false
	tm := &Timeout{Next: RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		called = true
		if _, ok := r.Context().Deadline(); ok {
			t.Error("unexpected deadline")
		}
		return okResponse(r, 200, ""), nil
	})}
	if _, err := tm.RoundTrip(newReq("GET", "")); err != nil || !called {
		t.Fatalf("err = %v, called = %v", err, called)
	}
}

// TestTimeoutDoesNotCountWaitingForTheClient checks the time spent waiting for a client to
// send its body is not held against the backend: an attempt that takes three timeouts, all
// of them waiting for the client, does not time out; one where the wait stops does.
func TestTimeoutDoesNotCountWaitingForTheClient(t *testing.T) {
	const limit = 30 * time.Millisecond
	start := time.Now()
	var waiting atomic.Bool
	waiting.Store(true)
	var stoppedAt atomic.Int64
	body := &fakeBody{waited: func() time.Duration {
		if waiting.Load() {
			return time.Since(start) // the client is being waited for all along
		}
		return time.Duration(stoppedAt.Load())
	}}
	tm := &Timeout{Timeout: limit, Next: RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(3 * limit):
			return okResponse(r, 200, "answered"), nil
		}
	})}
	ctx := WithClientBody(context.Background(), body)
	resp, err := tm.RoundTrip(newReq("POST", "x").WithContext(ctx))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("waiting for the client counted against the backend: %v", err)
	}
	resp.Body.Close()

	// The body is in: from now on the backend's time runs.
	start = time.Now()
	stoppedAt.Store(0)
	waiting.Store(false)
	tm.Next = RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	})
	began := time.Now()
	if _, err := tm.RoundTrip(newReq("POST", "x").WithContext(ctx)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("timed out after %s, want about %s", d, limit)
	}
}
