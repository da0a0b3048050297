package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type attemptLog struct {
	bodies []string
}

func scripted(log *attemptLog, outcomes ...any) RoundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		var body string
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			body = string(b)
		}
		log.bodies = append(log.bodies, body)
		o := outcomes[min(len(log.bodies)-1, len(outcomes)-1)]
		switch o := o.(type) {
		case int:
			return okResponse(r, o, "status"), nil
		case error:
			return nil, o
		}
		panic("bad outcome")
	}
}

func noSleep(waits *[]time.Duration) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
}

func TestRetryOn503ThenSuccess(t *testing.T) {
	var log attemptLog
	var waits []time.Duration
	retries := 0
	r := &Retry{Next: scripted(&log, 503, 503, 200), Attempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 15 * time.Millisecond,
		Jitter: func(n time.Duration) time.Duration { return n }, Sleep: noSleep(&waits), OnRetry: func() { retries++ }}
	resp, err := r.RoundTrip(newReq("GET", ""))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("resp = %v, %v", resp, err)
	}
	if len(log.bodies) != 3 || retries != 2 {
		t.Fatalf("attempts = %d, retries = %d, want 3 and 2", len(log.bodies), retries)
	}
	if len(waits) != 2 || waits[0] != 10*time.Millisecond || waits[1] != 15*time.Millisecond {
		t.Fatalf("waits = %v, want [10ms 15ms] (doubling, capped)", waits)
	}
}

func TestRetryGivesUpAfterAttempts(t *testing.T) {
	var log attemptLog
	var waits []time.Duration
	r := &Retry{Next: scripted(&log, 502), Attempts: 3, Sleep: noSleep(&waits)}
	resp, err := r.RoundTrip(newReq("GET", ""))
	if err != nil || resp.StatusCode != 502 || len(log.bodies) != 3 {
		t.Fatalf("status %v, err %v, attempts %d", resp.StatusCode, err, len(log.bodies))
	}
}

func TestRetryWhatIsRetried(t *testing.T) {
	refused := errors.New("connection refused")
	tests := []struct {
		name     string
		method   string
		key      bool
		outcome  any
		attempts int
	}{
		{"GET on connection error", "GET", false, refused, 3},
		{"GET on 504", "GET", false, 504, 3},
		{"GET on 500", "GET", false, 500, 1},
		{"GET on 429", "GET", false, 429, 1},
		{"PUT on 503", "PUT", false, 503, 3},
		{"DELETE on 503", "DELETE", false, 503, 3},
		{"POST on 503", "POST", false, 503, 1},
		{"POST on connection error", "POST", false, refused, 1},
		{"PATCH on 503", "PATCH", false, 503, 1},
		{"POST with Idempotency-Key on 503", "POST", true, 503, 3},
		{"GET whose client body failed", "GET", false, fmt.Errorf("copying: %w", ErrClientBody), 1},
		{"PUT whose client body failed", "PUT", false, fmt.Errorf("copying: %w", ErrClientBody), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log attemptLog
			var waits []time.Duration
			r := &Retry{Next: scripted(&log, tt.outcome), Attempts: 3, Sleep: noSleep(&waits)}
			req := newReq(tt.method, "")
			if tt.key {
				req.Header.Set("Idempotency-Key", "k1")
			}
			r.RoundTrip(req)
			if len(log.bodies) != tt.attempts {
				t.Fatalf("attempts = %d, want %d", len(log.bodies), tt.attempts)
			}
		})
	}
}

func TestRetryReplaysBody(t *testing.T) {
	var log attemptLog
	var waits []time.Duration
	r := &Retry{Next: scripted(&log, 503, 503, 201), Attempts: 3, Sleep: noSleep(&waits)}
	req := newReq("PUT", "")
	req.Body = io.NopCloser(strings.NewReader("payload")) // no GetBody, unknown length
	req.ContentLength = -1
	resp, err := r.RoundTrip(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("%v %v", resp, err)
	}
	for i, b := range log.bodies {
		if b != "payload" {
			t.Fatalf("attempt %d got body %q", i, b)
		}
	}
}

func TestRetryLargeBodySentOnce(t *testing.T) {
	var log attemptLog
	var waits []time.Duration
	r := &Retry{Next: scripted(&log, 503), Attempts: 3, MaxBody: 8, Sleep: noSleep(&waits)}
	big := strings.Repeat("x", 20)
	for _, length := range []int64{-1, 20} {
		log.bodies = nil
		req := newReq("PUT", "")
		req.Body = io.NopCloser(strings.NewReader(big))
		req.ContentLength = length
		r.RoundTrip(req)
		if len(log.bodies) != 1 || log.bodies[0] != big {
			t.Fatalf("length %d: attempts %d, body %q; want one attempt with the whole body", length, len(log.bodies), log.bodies)
		}
	}
}

func TestRetryStopsWhenClientLeaves(t *testing.T) {
	var log attemptLog
	ctx, cancel := context.WithCancel(context.Background())
	r := &Retry{Next: scripted(&log, 503), Attempts: 5, Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}}
	_, err := r.RoundTrip(newReq("GET", "").WithContext(ctx))
	if !errors.Is(err, context.Canceled) || len(log.bodies) != 1 {
		t.Fatalf("err = %v after %d attempts", err, len(log.bodies))
	}
}

func TestRetryBudgetCaps(t *testing.T) {
	var log attemptLog
	var waits []time.Duration
	exhausted := 0
	budget := NewBudget(BudgetSettings{Ratio: 0.1, MinRetries: 2})
	r := &Retry{Next: scripted(&log, errors.New("connection refused")), Attempts: 3, Budget: budget,
		Sleep: noSleep(&waits), OnBudgetExhausted: func() { exhausted++ }}
	const requests = 200
	for range requests {
		r.RoundTrip(newReq("GET", ""))
	}
	retries := len(log.bodies) - requests
	if retries > requests/10+2 {
		t.Fatalf("%d retries for %d requests, budget allows %d", retries, requests, requests/10+2)
	}
	if retries < requests/10 {
		t.Fatalf("only %d retries; the budget should allow about %d", retries, requests/10+2)
	}
	if exhausted == 0 {
		t.Fatal("OnBudgetExhausted never called")
	}
}

func TestRetryFullJitterRange(t *testing.T) {
	r := &Retry{Backoff: 100 * time.Millisecond, MaxBackoff: 250 * time.Millisecond}
	for attempt := 1; attempt <= 5; attempt++ {
		ceiling := min(100*time.Millisecond<<(attempt-1), 250*time.Millisecond)
		for range 200 {
			if d := r.backoff(attempt); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %s, want within [0, %s]", attempt, d, ceiling)
			}
		}
	}
}
