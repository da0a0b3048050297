package facade

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBreakerAndFallback drives a failing backend through its breaker: it opens after the
// configured failures, refuses fast while open without calling the backend, serves safe
// requests from the fallback meanwhile, never sends a POST without an Idempotency-Key to
// the fallback or twice to the primary, and half-opens and closes once the backend heals.
func TestBreakerAndFallback(t *testing.T) {
	inv, mono := startBackend(t, "inventory"), startBackend(t, "monolith")
	var healthy atomic.Bool
	inv.set(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("inventory"))
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory:
    url: %s
    retry: { attempts: 3, backoff: 1ms, max_backoff: 2ms, budget: 1 }
    breaker: { consecutive_failures: 3, open_for: 500ms, half_open_requests: 1 }
  monolith: { url: %s }
routes:
  - match: { path: /api/inventory }
    to: inventory
    fallback: monolith
  - match: { path: /plain }
    to: inventory
`, inv.URL(), mono.URL()))

	// A POST without an Idempotency-Key is sent once, even on a 503, and not to the fallback.
	if status, _, _ := h.get("POST", "/api/inventory/reserve", nil); status != 503 {
		t.Fatalf("POST: status %d, want the backend's 503", status)
	}
	if inv.hits.Load() != 1 || mono.hits.Load() != 0 {
		t.Fatalf("POST without Idempotency-Key: inventory hit %d times, monolith %d; want 1 and 0", inv.hits.Load(), mono.hits.Load())
	}
	// Two more failures open the breaker (each POST is one failure).
	h.get("POST", "/plain", nil)
	h.get("POST", "/plain", nil)
	if st := h.f.Backends()[0].Breaker; st != "open" {
		t.Fatalf("breaker %s after 3 failures, want open", st)
	}
	hits := inv.hits.Load()

	// Open: refused fast, with Retry-After, without calling the backend.
	start := time.Now()
	status, body, hdr := h.get("GET", "/plain", nil)
	if status != 503 || !strings.Contains(body, `"circuit_open"`) || hdr.Get("Retry-After") == "" {
		t.Fatalf("open breaker: %d %s (Retry-After %q)", status, body, hdr.Get("Retry-After"))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("refusal took %s", d)
	}
	// Safe requests on the route with a fallback are served by it, and say so.
	status, body, hdr = h.get("GET", "/api/inventory/items", nil)
	if status != 200 || body != "monolith" || hdr.Get("Ficus-Backend") != "monolith" {
		t.Fatalf("fallback GET: %d %q Ficus-Backend %q", status, body, hdr.Get("Ficus-Backend"))
	}
	// Unsafe ones are not, with or without an Idempotency-Key.
	monoHits := mono.hits.Load()
	for _, hd := range []http.Header{nil, {"Idempotency-Key": {"k1"}}} {
		status, body, _ = h.get("POST", "/api/inventory/reserve", hd)
		if status != 503 || !strings.Contains(body, "circuit_open") {
			t.Fatalf("POST while open: %d %s", status, body)
		}
	}
	if mono.hits.Load() != monoHits {
		t.Fatal("a POST went to the fallback")
	}
	if inv.hits.Load() != hits {
		t.Fatalf("the open breaker let %d requests through", inv.hits.Load()-hits)
	}
	if got := h.metric(`ficus_backend_breaker_state{backend="inventory"}`); got != 2 {
		t.Fatalf("breaker state metric = %v, want 2 (open)", got)
	}
	if got := h.metric(`ficus_facade_fallbacks_total{backend="monolith",route="/api/inventory"}`); got != 1 {
		t.Fatalf("fallbacks metric = %v", got)
	}

	// The backend heals; after open_for the breaker half-opens, the trial succeeds, it closes.
	healthy.Store(true)
	// gobreaker reads the real clock: wait for the state itself.
	eventually(t, "the breaker half-opens after open_for", func() bool { return h.f.Backends()[0].Breaker == "half-open" })
	status, body, hdr = h.get("GET", "/api/inventory/items", nil)
	if status != 200 || body != "inventory" || hdr.Get("Ficus-Backend") != "inventory" {
		t.Fatalf("after recovery: %d %q from %q", status, body, hdr.Get("Ficus-Backend"))
	}
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s after a good trial, want closed", st)
	}
	if !strings.Contains(h.logs.String(), "circuit breaker state changed") {
		t.Fatal("breaker state changes were not logged")
	}
	if got := h.metric(`ficus_backend_breaker_transitions_total{backend="inventory",state="closed"}`); got != 1 {
		t.Fatalf("transitions to closed = %v", got)
	}
}

func TestFallbackWhenUnreachable(t *testing.T) {
	mono := startBackend(t, "monolith")
	// Without a health check, which would soon refuse the dead backend's requests itself.
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory: { url: %s, health: { disabled: true } }
  monolith: { url: %s }
routes:
  - match: { path: / }
    to: inventory
    fallback: monolith
`, deadURL(t), mono.URL()))
	status, body, hdr := h.get("GET", "/x", nil)
	if status != 200 || body != "monolith" || hdr.Get("Ficus-Backend") != "monolith" {
		t.Fatalf("%d %q from %q", status, body, hdr.Get("Ficus-Backend"))
	}
	status, body, _ = h.get("DELETE", "/x", nil)
	if status != 502 || !strings.Contains(body, "backend_unreachable") || mono.hits.Load() != 1 {
		t.Fatalf("DELETE: %d %s, monolith hits %d", status, body, mono.hits.Load())
	}
}

func TestRetry(t *testing.T) {
	b := startBackend(t, "flaky")
	var n atomic.Int32
	b.set(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok " + r.Method))
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  flaky:
    url: %s
    retry: { attempts: 3, backoff: 1ms, max_backoff: 5ms, budget: 1 }
    breaker: { consecutive_failures: 100 }
routes:
  - match: { path: / }
    to: flaky
`, b.URL()))
	status, body, _ := h.get("GET", "/", nil)
	if status != 200 || body != "ok GET" || b.hits.Load() != 3 {
		t.Fatalf("GET: %d %q after %d attempts", status, body, b.hits.Load())
	}
	if got := h.metric(`ficus_backend_retries_total{backend="flaky"}`); got != 2 {
		t.Fatalf("retries metric = %v", got)
	}
	// A PUT's body is replayed on each attempt.
	resp := h.do("PUT", "/doc", nil, strings.NewReader("the body"))
	resp.Body.Close()
	if resp.StatusCode != 200 || b.hits.Load() != 6 || b.seen().body != "the body" {
		t.Fatalf("PUT: %d after %d attempts, last body %q", resp.StatusCode, b.hits.Load()-3, b.seen().body)
	}
	// POST: once without an Idempotency-Key, retried with one.
	n.Store(0)
	if status, _, _ := h.get("POST", "/", nil); status != 503 || b.hits.Load() != 7 {
		t.Fatalf("POST: %d, %d attempts", status, b.hits.Load()-6)
	}
	n.Store(0)
	if status, _, _ := h.get("POST", "/", http.Header{"Idempotency-Key": {"k"}}); status != 200 || b.hits.Load() != 10 {
		t.Fatalf("POST with key: %d, %d attempts", status, b.hits.Load()-7)
	}
}

// TestRetryBudget checks that against a backend that always fails, retries stay within the
// budget's share of requests plus its small minimum.
func TestRetryBudget(t *testing.T) {
	b := startBackend(t, "down")
	b.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	h := startFacade(t, fmt.Sprintf(`
backends:
  down:
    url: %s
    retry: { attempts: 3, backoff: 1ms, max_backoff: 1ms, budget: 0.1 }
    breaker: { consecutive_failures: 100000 }
routes:
  - match: { path: / }
    to: down
`, b.URL()))
	const requests = 300
	for range requests {
		if status, _, _ := h.get("GET", "/", nil); status != 503 {
			t.Fatalf("status %d", status)
		}
	}
	retries := b.hits.Load() - requests
	limit := int64(requests/10 + 10) // 10% plus the budget's minimum of 10 per window
	t.Logf("%d retries for %d requests", retries, requests)
	if retries > limit || retries < requests/10 {
		t.Fatalf("%d retries for %d requests; the budget allows %d", retries, requests, limit)
	}
	if got := h.metric(`ficus_backend_retries_total{backend="down"}`); got != float64(retries) {
		t.Fatalf("retries metric %v, backend saw %d", got, retries)
	}
	if got := h.metric(`ficus_backend_retry_budget_exhausted_total{backend="down"}`); got < requests/2 {
		t.Fatalf("budget exhausted %v times", got)
	}
}

func TestBulkheadRejectsExcess(t *testing.T) {
	b := startBackend(t, "narrow")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	b.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			w.Write([]byte("done"))
		case <-r.Context().Done():
		}
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  narrow:
    url: %s
    bulkhead: { max_concurrent: 2, max_queue: 1, queue_timeout: 5s }
routes:
  - match: { path: / }
    to: narrow
`, b.URL()))
	// Registered after the servers, so it runs before they close: a bulkhead that lets
	// too much through fails the test instead of hanging it.
	t.Cleanup(free)
	client := &http.Client{Timeout: 5 * time.Second}
	results := make(chan int, 3)
	for range 3 {
		go func() {
			resp, err := client.Get(h.proxy.URL + "/")
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	eventually(t, "two requests in flight and one queued", func() bool {
		bi := h.f.Backends()[0]
		return bi.InFlight == 2 && bi.Queued == 1
	})
	start := time.Now()
	resp, err := client.Get(h.proxy.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	bodyBytes, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	status, body, hdr := resp.StatusCode, string(bodyBytes), resp.Header
	if status != 503 || !strings.Contains(body, `"bulkhead_full"`) || hdr.Get("Retry-After") != "1" {
		t.Fatalf("excess request: %d %s Retry-After %q", status, body, hdr.Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("rejection took %s, want fast (the queue timeout is 5s)", d)
	}
	// The admin API shows the pressure.
	if _, body := h.adminGet("/api/backends", testToken); !strings.Contains(body, `"in_flight": 2`) || !strings.Contains(body, `"queue_depth": 1`) {
		t.Fatalf("/api/backends: %s", body)
	}
	free()
	for range 3 {
		if s := <-results; s != 200 {
			t.Fatalf("admitted request: status %d", s)
		}
	}
	if got := h.metric(`ficus_backend_bulkhead_rejections_total{backend="narrow"}`); got != 1 {
		t.Fatalf("rejections metric = %v", got)
	}
	if b.hits.Load() != 3 {
		t.Fatalf("backend hit %d times, want 3", b.hits.Load())
	}
}
