package resilience

import (
	"context"
	"errors"
	"io"
	"net/http"
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
		time.Sleep(60 * time.Millisecond) // well past the timeout
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
