package resilience

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// Retry sends idempotent requests (see Idempotent) again when an attempt fails with a
// connection error or timeout, or answers 502, 503 or 504. It waits between attempts with
// exponential backoff and full jitter, and asks its Budget before each retry. A request body
// is replayed from GetBody or, up to MaxBody bytes, from a copy; a larger body is sent once.
type Retry struct {
	// Next sends one attempt. Required.
	Next http.RoundTripper
	// Attempts is the total number of attempts, the first included. Below 2 means no retries.
	Attempts int
	// Backoff is the base of the exponential backoff. Zero means 50ms.
	Backoff time.Duration
	// MaxBackoff caps one wait. Zero means 1s.
	MaxBackoff time.Duration
	// Budget, if set, caps retries as a share of requests.
	Budget *Budget
	// MaxBody is the largest request body copied so it can be replayed. Zero means 1 MiB.
	MaxBody int64
	// Jitter returns a random duration in [0, n]. Zero means math/rand/v2.
	Jitter func(n time.Duration) time.Duration
	// Sleep waits d or until ctx is done. Zero means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, if set, is called before each retry.
	OnRetry func()
	// OnBudgetExhausted, if set, is called when the budget refuses a retry.
	OnBudgetExhausted func()
}

var _ http.RoundTripper = (*Retry)(nil)

// RoundTrip sends req, retrying as the policy allows, and returns the last attempt's result.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.Budget != nil {
		r.Budget.Request()
	}
	if r.Attempts < 2 || !Idempotent(req) {
		return r.Next.RoundTrip(req)
	}
	req, replayable, err := r.replayable(req)
	if err != nil {
		return nil, err
	}
	if !replayable {
		return r.Next.RoundTrip(req)
	}
	for attempt := 1; ; attempt++ {
		resp, err := r.Next.RoundTrip(req)
		if attempt >= r.Attempts || !retriable(req, resp, err) {
			return resp, err
		}
		if r.Budget != nil && !r.Budget.Retry() {
			if r.OnBudgetExhausted != nil {
				r.OnBudgetExhausted()
			}
			return resp, err
		}
		if resp != nil {
			// Drain a little so the connection can be reused, then drop the answer.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
		if r.OnRetry != nil {
			r.OnRetry()
		}
		if err := r.sleep(req.Context(), r.backoff(attempt)); err != nil {
			return nil, fmt.Errorf("waiting to retry %s %s: %w", req.Method, req.URL.Host, err)
		}
		if req, err = rewind(req); err != nil {
			return nil, err
		}
	}
}

// retriable reports whether an attempt's outcome is worth another attempt. A failure that is
// the client's fault is not: the backend did nothing wrong, and retrying spends its budget.
func retriable(req *http.Request, resp *http.Response, err error) bool {
	if req.Context().Err() != nil || ClientFault(req, err) {
		return false
	}
	if err != nil {
		return true
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff returns the wait before the retry that follows attempt: a random duration up to
// Backoff×2^(attempt-1), capped at MaxBackoff ("full jitter").
func (r *Retry) backoff(attempt int) time.Duration {
	base, ceiling := r.Backoff, r.MaxBackoff
	if base <= 0 {
		base = 50 * time.Millisecond
	}
	if ceiling <= 0 {
		ceiling = time.Second
	}
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if r.Jitter != nil {
		return r.Jitter(d)
	}
	return rand.N(d + 1)
}

func (r *Retry) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replayable returns req ready to be sent more than once, or says it cannot be: its body is
// too large to copy. The returned request must be sent either way.
func (r *Retry) replayable(req *http.Request) (*http.Request, bool, error) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, true, nil
	}
	limit := r.MaxBody
	if limit <= 0 {
		limit = 1 << 20
	}
	if req.ContentLength > limit {
		return req, false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("reading request body of %s %s: %w", req.Method, req.URL.Host, err)
	}
	out := new(http.Request)
	*out = *req
	if int64(len(buf)) > limit {
		// Too large after all (no Content-Length): send what was read, then the rest, once.
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return out, false, nil
	}
	req.Body.Close()
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	out.Body, _ = out.GetBody()
	return out, true, nil
}

// rewind returns a copy of req with a fresh body for the next attempt.
func rewind(req *http.Request) (*http.Request, error) {
	out := new(http.Request)
	*out = *req
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("replaying the body of %s %s: %w", req.Method, req.URL.Host, err)
		}
		out.Body = body
	}
	return out, nil
}
